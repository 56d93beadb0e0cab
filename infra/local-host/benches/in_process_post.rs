//! What one `PostToConnection` costs its caller in process, before any gateway work
//! (`cargo bench -p local-host --bench in_process_post`).
//!
//! The SDK client posts through [`local_host::InProcessClient`] to a route that answers
//! 200 at once, on one thread, with the allocator `fleet` uses: what is timed is the
//! SDK's own request pipeline (builders, runtime plugins, interceptors, endpoint,
//! serializer, retry bookkeeping, deserializer) plus the router. A broadcast to N
//! subscribers pays it N times, so it bounds `fleet bench notifier` from below. Plain
//! `Instant` timing; the best of a few repeats is printed, as the machine is shared.
//!
//! Then two threads post at once, through one client and through a client each: the
//! reason the notifier gives each of its pushing tasks a client of its own.

use std::process::ExitCode;
use std::time::Instant;

use aws_sdk_apigatewaymanagement::config::{
    Builder, Credentials, Region, StalledStreamProtectionConfig,
};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use axum::Router;
use axum::routing::post;
use local_host::{InProcessClient, InProcessInterceptor};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const POSTS: u32 = 50_000;
const REPEATS: u32 = 3;
/// Never dialled: the client hands its requests to the router.
const ENDPOINT: &str = "http://127.0.0.1:9";
/// About a notifier frame's size.
const PAYLOAD_BYTES: usize = 250;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting a runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let in_process = InProcessClient::new();
    in_process.bind(Router::new().route("/@connections/{id}", post(|| async {})));
    let variants = [
        (
            "as fleet dev posts: unsigned, InProcessInterceptor",
            false,
            true,
        ),
        ("unsigned, every SDK interceptor", false, false),
        ("signed (SigV4), every SDK interceptor", true, false),
    ];
    for (label, signed, intercepted) in variants {
        let client = client(&in_process, signed, intercepted);
        match runtime.block_on(best_of(&client)) {
            Ok(micros) => println!("{label}: {micros:.1} µs per PostToConnection"),
            Err(error) => {
                eprintln!("error: {label}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let shared = client(&in_process, false, true);
    for (label, one_client) in [
        ("through one client", true),
        ("through a client each", false),
    ] {
        let clients = [0, 1].map(|_| match one_client {
            true => shared.clone(),
            false => client(&in_process, false, true),
        });
        match two_threads(clients) {
            Ok(micros) => println!("two threads at once, {label}: {micros:.1} µs per post"),
            Err(error) => {
                eprintln!("error: two threads, {label}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Each client posting on a thread of its own at the same time: the wall time per post
/// of one thread (the same as one thread alone when they do not contend).
fn two_threads(clients: [aws_sdk_apigatewaymanagement::Client; 2]) -> Result<f64, String> {
    std::thread::scope(|scope| {
        let threads = clients.map(|client| {
            scope.spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime
                    .block_on(best_of(&client))
                    .map_err(|e| e.to_string())
            })
        });
        let mut worst = 0f64;
        for thread in threads {
            let micros = thread
                .join()
                .map_err(|_| "a posting thread panicked".to_owned())??;
            worst = worst.max(micros);
        }
        Ok(worst)
    })
}

/// The variant's client: `fleet dev`'s own, or one with the SDK's defaults.
fn client(
    in_process: &InProcessClient,
    signed: bool,
    intercepted: bool,
) -> aws_sdk_apigatewaymanagement::Client {
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .build();
    if intercepted && !signed {
        return in_process.management_client(&sdk, ENDPOINT);
    }
    let mut config = Builder::from(&sdk)
        .endpoint_url(ENDPOINT)
        .http_client(in_process.clone())
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
    config = if signed {
        config.credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
    } else {
        config.allow_no_auth()
    };
    if intercepted {
        config = config.interceptor(InProcessInterceptor);
    }
    aws_sdk_apigatewaymanagement::Client::from_conf(config.build())
}

/// The best per-post time of [`REPEATS`] runs of [`POSTS`] posts, in microseconds.
async fn best_of(
    client: &aws_sdk_apigatewaymanagement::Client,
) -> Result<f64, aws_sdk_apigatewaymanagement::Error> {
    let payload = vec![b'x'; PAYLOAD_BYTES];
    let mut best = f64::INFINITY;
    for _ in 0..REPEATS {
        let started = Instant::now();
        for _ in 0..POSTS {
            client
                .post_to_connection()
                .connection_id("bench-connection")
                .data(Blob::new(payload.clone()))
                .send()
                .await?;
        }
        best = best.min(started.elapsed().as_secs_f64() * 1e6 / f64::from(POSTS));
    }
    Ok(best)
}
