//! Wiring: binds the topology's functions to their implementations, prepares what the
//! emulator lacks, and runs the pollers and the HTTP server until shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;

use aws_config::SdkConfig;
use axum::Router;
use axum::serve::ListenerExt as _;
use provision::DeployReport;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use topology::{BusRef, FunctionKind, Names, Target, Topology};

use crate::asynchronous::{self, Delivery, RuleRef};
use crate::config::Config;
use crate::error::HostError;
use crate::function::Functions;
use crate::gateway::Api;
use crate::in_process::InProcessClient;
use crate::invoke::Bound;
use crate::lambda_api::LambdaApi;
use crate::poll::{self, Unit};
use crate::sqs::{self, Mapping};
use crate::ttl;
use crate::websocket::WebSocketGateway;

/// The local-only queue through which rules deliver events to `function` (a logical
/// name): `fleet-<stage>-local-<function>`. It does not exist on AWS.
pub fn delivery_queue(names: &Names, function: &str) -> String {
    names.queue(&format!("local-{function}"))
}

/// The id of the rule target pointing at a function's delivery queue:
/// `local-lambda-<function>`. Deployment leaves targets with this prefix alone.
pub fn delivery_target_id(function: &str) -> String {
    format!("{TARGET_PREFIX}{function}")
}

const TARGET_PREFIX: &str = "local-lambda-";

/// Runs the host until `shutdown` is cancelled (or a host task fails), then stops it
/// gracefully.
pub async fn run(
    config: Config,
    topology: &Topology,
    report: &DeployReport,
    functions: Functions,
    sdk: &SdkConfig,
    shutdown: CancellationToken,
) -> Result<(), HostError> {
    Host::new(config, functions)
        .start(topology, report, sdk)
        .await?
        .until(shutdown)
        .await
}

/// A host about to start.
#[derive(Debug)]
pub struct Host {
    config: Config,
    functions: Functions,
    extra: Option<Router>,
    in_process: Option<InProcessClient>,
}

impl Host {
    pub fn new(config: Config, functions: Functions) -> Self {
        Host {
            config,
            functions,
            extra: None,
            in_process: None,
        }
    }

    /// Binds `client` to this host's router when it starts, so SDK clients built with it
    /// reach the host's APIs without a socket (see [`InProcessClient`]).
    pub fn serve_in_process(mut self, client: InProcessClient) -> Self {
        self.in_process = Some(client);
        self
    }

    /// Serves `routes` on the same listener as the HTTP API (e.g. a WebSocket gateway).
    /// They take precedence over the topology's routes; a fallback of theirs is replaced
    /// by the HTTP API.
    pub fn with_extra(mut self, routes: Router) -> Self {
        self.extra = Some(match self.extra.take() {
            Some(extra) => extra.merge(routes),
            None => routes,
        });
        self
    }

    /// Checks the registrations against the topology, creates the delivery queues and
    /// rule targets, binds the HTTP listener and starts every task.
    pub async fn start(
        self,
        topology: &Topology,
        report: &DeployReport,
        sdk: &SdkConfig,
    ) -> Result<RunningHost, HostError> {
        let Host {
            config,
            functions,
            extra,
            in_process,
        } = self;
        topology.validate()?;
        let faults = Arc::new(crate::faults::Injector::new(
            config.invocation_faults.clone(),
        ));
        let meter = Arc::new(crate::meter::Meter::default());
        let (bound, account) = bind(
            topology,
            report,
            &functions,
            config.function_instances,
            &faults,
            &meter,
        )?;
        let names = topology.names();
        let sqs_client = aws_sdk_sqs::Client::new(sdk);
        let sns = aws_sdk_sns::Client::new(sdk);
        let events = aws_sdk_eventbridge::Client::new(sdk);
        let token = CancellationToken::new();

        // Everything fallible happens before the first task is spawned.
        for rule in topology.rules() {
            let wanted: Vec<String> = rule
                .targets
                .iter()
                .filter_map(|t| match t {
                    Target::Function(f) => Some(delivery_target_id(f)),
                    _ => None,
                })
                .collect();
            let rule_ref = RuleRef {
                physical: names.rule(&rule.name),
                bus: match rule.bus {
                    BusRef::Fleet => names.bus(),
                    BusRef::Default => "default".to_owned(),
                },
                arn: String::new(),
            };
            asynchronous::prune_targets(&events, &rule_ref, TARGET_PREFIX, &wanted).await?;
        }
        let mut deliveries = Vec::new();
        let mut rules: BTreeMap<&str, Vec<RuleRef>> = BTreeMap::new();
        // Every asynchronous function gets a delivery queue, targeted by rules or not: the
        // Invoke API queues `Event` invocations there.
        for f in topology.functions() {
            if matches!(f.kind, FunctionKind::Async) {
                rules.entry(f.name.as_str()).or_default();
            }
        }
        for target in &report.lambda_targets {
            let arn = report
                .rule_arn(&target.rule)
                .ok_or_else(|| not_deployed(format!("rule {}", target.rule)))?;
            rules
                .entry(target.function.as_str())
                .or_default()
                .push(RuleRef {
                    physical: target.rule_physical.clone(),
                    bus: target.bus.clone(),
                    arn: arn.to_owned(),
                });
        }
        for (function, rules) in rules {
            let Some(bound_function) = bound.get(function) else {
                return Err(not_deployed(format!(
                    "function {function}, which a rule targets,"
                )));
            };
            let dead_letter_arn = topology
                .function(function)
                .and_then(|f| f.dead_letter.as_deref())
                .and_then(|topic| report.topic_arn(topic))
                .ok_or_else(|| not_deployed(format!("the dead-letter topic of {function}")))?;
            let source = asynchronous::ensure_delivery(
                &sqs_client,
                &events,
                bound_function,
                &delivery_queue(&names, function),
                &delivery_target_id(function),
                &rules,
                &config,
            )
            .await?;
            deliveries.push(Arc::new(Delivery {
                function: bound_function.clone(),
                sqs: sqs_client.clone(),
                sns: sns.clone(),
                source,
                dead_letter_arn: dead_letter_arn.to_owned(),
                retry_delays: config.async_retry_delays.clone(),
                error_backoff: config.error_backoff,
                token: token.clone(),
            }));
        }

        let mut mappings = Vec::new();
        for f in topology.functions() {
            let FunctionKind::Sqs { queue, batch_size } = &f.kind else {
                continue;
            };
            let (Some(url), Some(arn)) = (report.queue_url(queue), report.queue_arn(queue)) else {
                return Err(not_deployed(format!("queue {queue}")));
            };
            let Some(function) = bound.get(&f.name) else {
                unreachable!("bind() bound every function of the topology");
            };
            let mapping = Arc::new(Mapping {
                function: function.clone(),
                sqs: sqs_client.clone(),
                source: poll::Source {
                    url: url.to_owned(),
                    name: names.queue(queue),
                },
                queue_arn: arn.to_owned(),
                region: account.region.clone(),
            });
            mappings.push((mapping, *batch_size as usize));
        }

        let delivery_urls: BTreeMap<String, String> = deliveries
            .iter()
            .map(|d| (d.function.name.clone(), d.source.url.clone()))
            .collect();
        let lambda_api = LambdaApi::new(&bound, &delivery_urls, sqs_client.clone());
        let websocket = WebSocketGateway::new(
            topology,
            &bound,
            account.clone(),
            &config.websocket,
            token.clone(),
        )?;
        let api = Api::new(topology, &bound, account)?;
        let mut listener = None;
        if let Some(addr) = config.http_addr {
            let bound_listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| HostError::Bind { addr, source })?;
            let local = bound_listener
                .local_addr()
                .map_err(|source| HostError::Bind { addr, source })?;
            listener = Some((bound_listener, local));
        }

        let mut tasks: JoinSet<Result<(), HostError>> = JoinSet::new();
        for delivery in deliveries {
            let source = delivery.source.clone();
            let span = tracing::info_span!("deliver", function = %delivery.function.name);
            let poll_config = config.clone();
            let work = {
                let delivery = Arc::clone(&delivery);
                move |mut messages: Vec<aws_sdk_sqs::types::Message>| {
                    let delivery = Arc::clone(&delivery);
                    let message = messages.pop();
                    async move {
                        if let Some(message) = message {
                            asynchronous::deliver(delivery, message).await;
                        }
                    }
                }
            };
            tasks.spawn(tracing::Instrument::instrument(
                async move {
                    poll::poll(
                        delivery.sqs.clone(),
                        source,
                        Unit::Message,
                        poll_config,
                        delivery.token.clone(),
                        work,
                    )
                    .await;
                    Ok(())
                },
                span,
            ));
        }
        for (mapping, batch_size) in mappings {
            let span =
                tracing::info_span!("event_source_mapping", function = %mapping.function.name);
            let poll_config = config.clone();
            let token = token.clone();
            tasks.spawn(tracing::Instrument::instrument(
                async move {
                    let work = {
                        let mapping = Arc::clone(&mapping);
                        move |messages| sqs::handle_batch(Arc::clone(&mapping), messages)
                    };
                    poll::poll(
                        mapping.sqs.clone(),
                        mapping.source.clone(),
                        Unit::Batch(batch_size),
                        poll_config,
                        token,
                        work,
                    )
                    .await;
                    Ok(())
                },
                span,
            ));
        }
        let expiries: Vec<ttl::Expiry> = topology
            .tables()
            .filter_map(|t| ttl::Expiry::of(t, names.table(&t.name)))
            .collect();
        if !expiries.is_empty() {
            let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
            let (interval, token) = (config.ttl_sweep_interval, token.clone());
            tasks.spawn(async move {
                ttl::run(dynamodb, expiries, interval, token).await;
                Ok(())
            });
        }
        let mut http_addr = None;
        if let Some((listener, local)) = listener {
            http_addr = Some(local);
            let mut routes = match extra {
                Some(extra) => extra.merge(lambda_api.into_router()),
                None => lambda_api.into_router(),
            };
            // The WebSocket gateway's connections outlive their HTTP requests: the server
            // task joins them after the server stops (the shutdown token closes them).
            let mut connections = None;
            if let Some(websocket) = websocket {
                connections = Some(websocket.closer());
                routes = routes.merge(websocket.into_router());
            }
            let router =
                routes
                    .fallback_service(api.into_router())
                    .layer(axum::middleware::from_fn(move |request, next| {
                        crate::guard::loopback_host(Some(local), request, next)
                    }));
            if let Some(client) = &in_process {
                client.bind(router.clone());
            }
            let token = token.clone();
            tasks.spawn(async move {
                tracing::info!(addr = %local, "HTTP API listening");
                // Frames go out as they are written (a WebSocket push or an SSE event is
                // small and waits for nothing), not held back by Nagle's algorithm.
                let listener = listener.tap_io(|tcp| {
                    if let Err(error) = tcp.set_nodelay(true) {
                        tracing::debug!(%error, "could not set TCP_NODELAY on a connection");
                    }
                });
                let served = axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(token.cancelled_owned())
                .await
                .map_err(HostError::Serve);
                if let Some(connections) = connections {
                    connections.close().await;
                }
                served
            });
        } else if extra.is_some()
            || topology.functions().any(|f| {
                matches!(
                    f.kind,
                    FunctionKind::Http { .. } | FunctionKind::WebSocket { .. }
                )
            })
        {
            tracing::warn!("no HTTP address is configured; the HTTP API is not served");
        }
        tracing::info!(stage = %topology.stage, tasks = tasks.len(), "local host started");
        Ok(RunningHost {
            http_addr,
            faults,
            meter,
            token,
            tasks,
        })
    }
}

/// A started host. Dropping it without [`RunningHost::shutdown`] aborts its tasks.
#[derive(Debug)]
pub struct RunningHost {
    http_addr: Option<SocketAddr>,
    faults: Arc<crate::faults::Injector>,
    meter: Arc<crate::meter::Meter>,
    token: CancellationToken,
    tasks: JoinSet<Result<(), HostError>>,
}

impl RunningHost {
    /// Where the HTTP API listens, if it does.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The invocation faults injected so far ([`crate::Config::invocation_faults`]).
    pub fn invocation_faults(&self) -> crate::InvocationFaultCounts {
        self.faults.counts()
    }

    /// Every function's invocations and billed time so far, by logical name.
    pub fn function_usage(&self) -> BTreeMap<String, crate::FunctionUsage> {
        self.meter.usage()
    }

    /// Turns the configured invocation faults on or off (they start on).
    pub fn set_invocation_faults(&self, on: bool) {
        self.faults.set_enabled(on);
    }

    /// Stops polling and serving, lets the invocations in flight finish, and joins every
    /// task. Events waiting for a retry stay in their queue for the next start.
    pub async fn shutdown(mut self) -> Result<(), HostError> {
        self.token.cancel();
        let mut first_error = None;
        while let Some(done) = self.tasks.join_next().await {
            let result = done
                .map_err(|e| HostError::Task(e.to_string()))
                .and_then(|r| r);
            if let Err(e) = result {
                tracing::error!(error = %e, "host task failed");
                first_error.get_or_insert(e);
            }
        }
        tracing::info!("local host stopped");
        first_error.map_or(Ok(()), Err)
    }

    /// Runs until `shutdown` is cancelled or a task ends on its own (which only a failure
    /// makes it do), then shuts down.
    pub async fn until(mut self, shutdown: CancellationToken) -> Result<(), HostError> {
        let early = tokio::select! {
            () = shutdown.cancelled() => None,
            Some(done) = self.tasks.join_next() => Some(done),
        };
        let early = match early {
            None => Ok(()),
            Some(Ok(Ok(()))) => Err(HostError::Task(
                "a host task stopped unexpectedly".to_owned(),
            )),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(HostError::Task(e.to_string())),
        };
        let rest = self.shutdown().await;
        early.and(rest)
    }
}

/// The partition, region and account the deployment lives in, from the bus's ARN.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub(crate) partition: String,
    pub(crate) region: String,
    pub(crate) id: String,
}

impl Account {
    fn from_report(report: &DeployReport) -> Result<Account, HostError> {
        let arn = report
            .bus_arn()
            .ok_or_else(|| not_deployed("the event bus".to_owned()))?;
        // arn:<partition>:events:<region>:<account>:event-bus/<name>
        let fields: Vec<&str> = arn.split(':').collect();
        match fields.as_slice() {
            ["arn", partition, _, region, account, ..] => Ok(Account {
                partition: (*partition).to_owned(),
                region: (*region).to_owned(),
                id: (*account).to_owned(),
            }),
            _ => Err(not_deployed(format!(
                "a well-formed event bus ARN (got {arn})"
            ))),
        }
    }
}

/// Binds every function of the topology to its registered implementation: each must
/// have one, no implementation may be left over, and HTTP services serve HTTP functions.
pub(crate) fn bind(
    topology: &Topology,
    report: &DeployReport,
    functions: &Functions,
    instances: NonZeroUsize,
    faults: &Arc<crate::faults::Injector>,
    meter: &Arc<crate::meter::Meter>,
) -> Result<(BTreeMap<String, Bound>, Account), HostError> {
    let names = topology.names();
    let mut registered = Vec::new();
    let mut missing = Vec::new();
    for f in topology.functions() {
        let Some(implementation) = functions.get(&f.name) else {
            missing.push(f.name.clone());
            continue;
        };
        let kind = match f.kind {
            FunctionKind::Async => Some("asynchronous"),
            FunctionKind::Sqs { .. } => Some("SQS-fed"),
            FunctionKind::WebSocket { .. } => Some("WebSocket"),
            FunctionKind::Http { .. } => None,
        };
        if let (true, Some(kind)) = (implementation.http, kind) {
            return Err(HostError::NotHttp {
                function: f.name.clone(),
                kind,
            });
        }
        registered.push((f, implementation));
    }
    if !missing.is_empty() {
        return Err(HostError::MissingFunctions { names: missing });
    }
    let unknown: Vec<String> = functions
        .names()
        .filter(|n| topology.function(n).is_none())
        .map(str::to_owned)
        .collect();
    if !unknown.is_empty() {
        return Err(HostError::UnknownFunctions { names: unknown });
    }
    let account = Account::from_report(report)?;
    let bound = registered
        .into_iter()
        .map(|(f, implementation)| {
            let physical = names.function(&f.name);
            let arn = format!(
                "arn:{}:lambda:{}:{}:function:{physical}",
                account.partition, account.region, account.id
            );
            let function = Bound {
                name: f.name.clone(),
                physical,
                arn,
                timeout: f.timeout,
                memory_mb: f.memory_mb,
                handler: Arc::clone(&implementation.function),
                instances: Arc::new(Semaphore::new(instances.get())),
                faults: Arc::clone(faults),
                meter: Arc::clone(meter),
            };
            (f.name.clone(), function)
        })
        .collect();
    Ok((bound, account))
}

fn not_deployed(what: String) -> HostError {
    HostError::NotDeployed { what }
}
