//! The notifier's table: connections, subscriptions, channel histories and job owners.
//! The layout is in the crate docs.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use backon::{BackoffBuilder as _, ExponentialBuilder};
use contracts::frames::{
    Discontinuity, DiscontinuityReason as Reason, Frame, MAX_CHANNELS_PER_CONNECTION,
};
use serde_json::Value;
use time::OffsetDateTime;

use crate::NotifierConfig;
use crate::channel::Channel;
use crate::error::StoreError;

type Item = HashMap<String, AttributeValue>;

/// A live connection's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    /// The token's subject: whose channels it may subscribe to.
    pub sub: String,
    pub channels: BTreeSet<String>,
}

/// A channel's history after some offset.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// The channel's last offset (0: nothing was ever published).
    pub head: u64,
    /// The frames kept after the requested offset, in order.
    pub frames: Vec<Frame>,
}

impl History {
    /// The `discontinuity` to send before the frames when they do not continue `since`
    /// (frames were dropped from the history, or the client is ahead of the channel).
    pub fn discontinuity(&self, channel: &str, since: u64) -> Option<Frame> {
        let first = self.frames.first().map_or(self.head + 1, |f| f.offset);
        let lost_up_to = first - 1;
        if since > self.head {
            // The client knows offsets the channel never had: its position is void.
            return Some(discontinuity(channel, since, self.head, Reason::Ahead));
        }
        (lost_up_to > since).then(|| discontinuity(channel, since, lost_up_to, Reason::Expired))
    }
}

fn discontinuity(channel: &str, since: u64, resume_after: u64, reason: Reason) -> Frame {
    Frame::discontinuity(
        channel,
        Discontinuity {
            since,
            resume_after,
            reason,
        },
    )
}

/// An event's frame for one channel, before it has an offset.
#[derive(Debug, Clone)]
pub struct Draft<'a> {
    pub channel: &'a str,
    pub event_id: &'a str,
    /// The event's detail-type.
    pub kind: &'a str,
    pub data: Value,
    pub correlation_id: Option<String>,
}

/// Whether [`Store::append`] wrote a new frame or found the event's earlier one.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    New(Frame),
    Duplicate(Frame),
}

impl Appended {
    pub fn frame(&self) -> &Frame {
        match self {
            Appended::New(f) | Appended::Duplicate(f) => f,
        }
    }
}

/// The notifier table.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    table: String,
    config: NotifierConfig,
    /// Serializes appends to a channel in process, one lock per stripe of channels.
    appending: Arc<[tokio::sync::Mutex<()>; APPEND_STRIPES]>,
    /// Owners already read or written: a job's owner never changes, so a warm process
    /// spares every later event of the job that read.
    owners: Arc<std::sync::Mutex<HashMap<String, Owner>>>,
    /// Subscriber shards already read, by channel and shard, with the `rev` they had.
    shards_seen: Arc<std::sync::Mutex<HashMap<String, HashMap<String, Shard>>>>,
}

/// A subscriber shard as read: its revision and its members.
#[derive(Debug, Clone)]
struct Shard {
    rev: String,
    members: Arc<[String]>,
}

/// Channels whose subscriber shards are remembered at most; past that the memory starts
/// over.
const CHANNELS_REMEMBERED: usize = 1024;

/// Owners remembered at most; past that the memory starts over.
const OWNERS_REMEMBERED: usize = 4096;

/// The owner row's attributes: the owner's `sub`, or `nobody` (true) for a job nobody owns.
const OWNER_SUB: &str = "sub";
const OWNER_NOBODY: &str = "nobody";

/// Lock stripes for appends: appends to different channels (an event's `job:` and
/// `user:` channels) rarely wait on each other.
const APPEND_STRIPES: usize = 64;
/// The most keys one `BatchGetItem` takes.
const BATCH_GET_KEYS: usize = 100;
/// How often keys DynamoDB left unprocessed are asked for again before a read fails.
const UNPROCESSED_RETRIES: usize = 5;

const PK: &str = "pk";
const SK: &str = "sk";
const EXPIRES: &str = "expiresAt";
/// A subscriber shard's members and revision.
const CONNS: &str = "conns";
const REV: &str = "rev";

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

fn conn_pk(id: &str) -> String {
    format!("conn#{id}")
}

fn chan_pk(channel: &str) -> String {
    format!("chan#{channel}")
}

fn frame_sk(offset: u64) -> String {
    format!("frame#{offset:020}")
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn expires(after: Duration) -> AttributeValue {
    n(now() + i64::try_from(after.as_secs()).unwrap_or(i64::MAX / 2))
}

fn expired(item: &Item) -> bool {
    item.get(EXPIRES)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .is_some_and(|at| at <= now())
}

fn attr_s<'a>(item: &'a Item, name: &str) -> Option<&'a String> {
    item.get(name).and_then(|v| v.as_s().ok())
}

/// A subscriber shard's new revision: random, so no two states of a shard share one.
fn revision() -> AttributeValue {
    s(uuid::Uuid::new_v4().simple().to_string())
}

fn string_set(item: &Item, name: &str) -> BTreeSet<String> {
    item.get(name)
        .and_then(|v| v.as_ss().ok())
        .map(|set| set.iter().cloned().collect())
        .unwrap_or_default()
}

/// An `UpdateItem` whose condition only guards against redoing or undoing work: a failed
/// condition means there was nothing to do.
fn unless_condition_failed(
    e: aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::update_item::UpdateItemError,
        aws_sdk_dynamodb::config::http::HttpResponse,
    >,
) -> Result<(), StoreError> {
    let e = e.into_service_error();
    if e.is_conditional_check_failed_exception() {
        Ok(())
    } else {
        Err(StoreError::new("UpdateItem", e))
    }
}

/// The offset a `head` item records (0 when it records none).
fn head_offset(item: &Item) -> u64 {
    item.get("offset")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The frame an event marker records.
fn marker_frame(item: &Item) -> Option<Frame> {
    item.get("frame")
        .and_then(|v| v.as_s().ok())
        .and_then(|json| serde_json::from_str(json).ok())
}

/// FNV-1a: a stable shard for a connection id.
fn shard_of(id: &str, shards: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % shards.max(1)
}

fn shard_sk(shard: u32) -> String {
    format!("subs#{shard:03}")
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>, config: NotifierConfig) -> Store {
        Store {
            client,
            table: table.into(),
            config,
            appending: Arc::new(std::array::from_fn(|_| tokio::sync::Mutex::new(()))),
            owners: Arc::default(),
            shards_seen: Arc::default(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// One item, read consistently: everything here reads what it just wrote or what a
    /// concurrent writer must be seen to have written.
    async fn get(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::new("GetItem", e.into_service_error()))?;
        Ok(out.item)
    }

    /// Records a connection for `sub` (at `$connect`).
    pub async fn put_connection(&self, id: &str, sub: &str) -> Result<(), StoreError> {
        let mut item = key(conn_pk(id), "conn");
        item.insert("sub".into(), s(sub));
        item.insert("connectedAt".into(), n(now()));
        item.insert(EXPIRES.into(), expires(self.config.connection_ttl));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| StoreError::new("PutItem", e.into_service_error()))?;
        Ok(())
    }

    /// The connection's row, unless it is gone or expired.
    pub async fn connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        let item = self.get(key(conn_pk(id), "conn")).await?;
        let Some(item) = item.filter(|i| !expired(i)) else {
            return Ok(None);
        };
        let sub = item
            .get("sub")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        Ok(Some(Connection {
            id: id.to_owned(),
            sub,
            channels: string_set(&item, "channels"),
        }))
    }

    /// Pushes the connection's expiry further out (`ping`).
    pub async fn touch_connection(&self, id: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(conn_pk(id), "conn")))
            .update_expression("SET #e = :e")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#e", EXPIRES)
            .expression_attribute_values(":e", expires(self.config.connection_ttl))
            .send()
            .await
            .map_or_else(unless_condition_failed, |_| Ok(()))
    }

    /// Removes a connection and every subscription it holds (`$disconnect`, or a push
    /// that found it gone). Idempotent.
    pub async fn remove_connection(&self, id: &str) -> Result<(), StoreError> {
        if let Some(conn) = self.connection(id).await? {
            for channel in &conn.channels {
                self.remove_subscriber(id, channel).await?;
            }
        }
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(conn_pk(id), "conn")))
            .send()
            .await
            .map_err(|e| StoreError::new("DeleteItem", e.into_service_error()))?;
        Ok(())
    }

    /// Adds the connection to the channel's subscribers, unless it already holds
    /// [`MAX_CHANNELS_PER_CONNECTION`] other channels (or is gone).
    ///
    /// The connection's row is written first, conditionally, so the bound holds however
    /// many subscribes of one connection run at once, and every shard that lists the
    /// connection is named by its row (which `$disconnect` reads to clean up).
    pub async fn subscribe(&self, id: &str, channel: &Channel) -> Result<Subscription, StoreError> {
        let channel = channel.to_string();
        let added = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(conn_pk(id), "conn")))
            .update_expression("ADD channels :c")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(channels) \
                 OR size(channels) < :max OR contains(channels, :name))",
            )
            .expression_attribute_values(":c", AttributeValue::Ss(vec![channel.clone()]))
            .expression_attribute_values(":name", s(channel.clone()))
            .expression_attribute_values(":max", n(MAX_CHANNELS_PER_CONNECTION))
            .send()
            .await;
        if let Err(e) = added {
            let e = e.into_service_error();
            if e.is_conditional_check_failed_exception() {
                return Ok(Subscription::Refused);
            }
            return Err(StoreError::new("UpdateItem", e));
        }
        self.add_subscriber(id, &channel).await?;
        Ok(Subscription::Added)
    }

    /// Adds the connection to its shard of the channel's subscribers (and nothing to
    /// its row: [`Store::subscribe`] does both).
    pub async fn add_subscriber(&self, id: &str, channel: &str) -> Result<(), StoreError> {
        let shard = shard_of(id, self.config.subscription_shards);
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(chan_pk(channel), shard_sk(shard))))
            .update_expression("ADD conns :c SET #e = :e, rev = :r")
            .expression_attribute_names("#e", EXPIRES)
            .expression_attribute_values(":c", AttributeValue::Ss(vec![id.to_owned()]))
            .expression_attribute_values(":e", expires(self.config.connection_ttl))
            .expression_attribute_values(":r", revision())
            .send()
            .await
            .map_err(|e| StoreError::new("UpdateItem", e.into_service_error()))?;
        Ok(())
    }

    /// Removes the connection from the channel's subscribers. Idempotent.
    pub async fn unsubscribe(&self, id: &str, channel: &Channel) -> Result<(), StoreError> {
        let channel = channel.to_string();
        self.remove_subscriber(id, &channel).await?;
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(conn_pk(id), "conn")))
            .update_expression("DELETE channels :c")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":c", AttributeValue::Ss(vec![channel]))
            .send()
            .await
            .map_or_else(unless_condition_failed, |_| Ok(()))
    }

    async fn remove_subscriber(&self, id: &str, channel: &str) -> Result<(), StoreError> {
        let shard = shard_of(id, self.config.subscription_shards);
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(chan_pk(channel), shard_sk(shard))))
            .update_expression("DELETE conns :c SET rev = :r")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":c", AttributeValue::Ss(vec![id.to_owned()]))
            .expression_attribute_values(":r", revision())
            .send()
            .await
            .map_or_else(unless_condition_failed, |_| Ok(()))
    }

    /// Every connection subscribed to `channel`, as its shards are now: one consistent
    /// `BatchGetItem` of their revisions, then one of the shards that changed since this
    /// process last read them (none, while the subscribers stay the same).
    ///
    /// A remembered shard is as good as a fresh read: its `rev` changes in the same write
    /// as its members, and is a fresh random token each time, so a shard that expired and
    /// was created again does not pass for the one remembered.
    pub async fn subscribers(&self, channel: &str) -> Result<Vec<String>, StoreError> {
        let keys: Vec<Item> = (0..self.config.subscription_shards.max(1))
            .map(|shard| key(chan_pk(channel), shard_sk(shard)))
            .collect();
        let revs = self.get_many_projected(keys, &[SK, REV]).await?;
        let mut now: HashMap<String, Shard> = HashMap::with_capacity(revs.len());
        let mut changed = Vec::new();
        {
            let seen = self.seen_shards();
            let remembered = seen.get(channel);
            for item in revs {
                let Some(sk) = attr_s(&item, SK) else {
                    continue;
                };
                match (
                    remembered.and_then(|shards| shards.get(sk)),
                    attr_s(&item, REV),
                ) {
                    (Some(shard), Some(rev)) if shard.rev == *rev => {
                        now.insert(sk.clone(), shard.clone());
                    }
                    _ => changed.push(key(chan_pk(channel), sk.clone())),
                }
            }
        }
        if !changed.is_empty() {
            for item in self.get_many_projected(changed, &[SK, REV, CONNS]).await? {
                let Some(sk) = attr_s(&item, SK) else {
                    continue;
                };
                // A shard last written before shards had revisions has none: remembered
                // as "", which no revision matches, it is read again every time.
                let rev = attr_s(&item, REV).cloned().unwrap_or_default();
                let members = string_set(&item, CONNS).into_iter().collect();
                now.insert(sk.clone(), Shard { rev, members });
            }
        }
        let mut out = Vec::with_capacity(now.values().map(|s| s.members.len()).sum());
        for shard in now.values() {
            out.extend(shard.members.iter().cloned());
        }
        let mut seen = self.seen_shards();
        if seen.len() >= CHANNELS_REMEMBERED && !seen.contains_key(channel) {
            seen.clear();
        }
        seen.insert(channel.to_owned(), now);
        Ok(out)
    }

    fn seen_shards(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Shard>>> {
        // Each entry is replaced whole: one a panicking holder left behind is still whole.
        self.shards_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records who requested a job (`None`: nobody, a job another service requested on
    /// the bus), unless the job already has another owner: the first owner stays (a
    /// conditional put), so a later `JobRequested` naming another owner cannot take over
    /// the job's channel, nor one naming an owner a job nobody owns. The same owner
    /// again only renews the row.
    pub async fn set_owner(
        &self,
        job_id: &str,
        sub: Option<&str>,
    ) -> Result<Ownership, StoreError> {
        let mut item = key(format!("job#{job_id}"), "owner");
        item.insert(EXPIRES.into(), expires(self.config.owner_ttl));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .expression_attribute_names("#e", EXPIRES)
            .expression_attribute_values(":now", n(now()));
        // An owner row past its TTL that DynamoDB has not deleted yet is no owner.
        let put = match sub {
            Some(sub) => {
                item.insert(OWNER_SUB.into(), s(sub));
                put.condition_expression("attribute_not_exists(pk) OR #s = :s OR #e <= :now")
                    .expression_attribute_names("#s", OWNER_SUB)
                    .expression_attribute_values(":s", s(sub))
            }
            None => {
                item.insert(OWNER_NOBODY.into(), AttributeValue::Bool(true));
                put.condition_expression("attribute_not_exists(pk) OR #n = :n OR #e <= :now")
                    .expression_attribute_names("#n", OWNER_NOBODY)
                    .expression_attribute_values(":n", AttributeValue::Bool(true))
            }
        };
        let owner = sub.map_or(Owner::Nobody, |sub| Owner::Sub(sub.to_owned()));
        match put.set_item(Some(item)).send().await {
            Ok(_) => {
                self.remember_owner(job_id, owner);
                Ok(Ownership::Recorded)
            }
            Err(e) => {
                let e = e.into_service_error();
                if !e.is_conditional_check_failed_exception() {
                    return Err(StoreError::new("PutItem", e));
                }
                let owner = match self.stored_owner(job_id).await? {
                    Some(Owner::Sub(sub)) => sub,
                    Some(Owner::Nobody) | None => "(nobody)".to_owned(),
                };
                Ok(Ownership::Refused { owner })
            }
        }
    }

    /// Who requested the job, if its `JobRequested` has been seen and named someone.
    pub async fn owner(&self, job_id: &str) -> Result<Option<String>, StoreError> {
        Ok(match self.known_owner(job_id).await? {
            Some(Owner::Sub(sub)) => Some(sub),
            Some(Owner::Nobody) | None => None,
        })
    }

    /// Whom the job's `JobRequested` named, if it has been seen.
    pub async fn known_owner(&self, job_id: &str) -> Result<Option<Owner>, StoreError> {
        if let Some(owner) = self.known_owners().get(job_id) {
            return Ok(Some(owner.clone()));
        }
        self.stored_owner(job_id).await
    }

    /// The owner row as stored (one consistent `GetItem`), unless it has expired.
    async fn stored_owner(&self, job_id: &str) -> Result<Option<Owner>, StoreError> {
        let item = self.get(key(format!("job#{job_id}"), "owner")).await?;
        let owner = item.filter(|i| !expired(i)).and_then(|i| {
            match i.get(OWNER_SUB).and_then(|v| v.as_s().ok()) {
                Some(sub) => Some(Owner::Sub(sub.clone())),
                None => i
                    .get(OWNER_NOBODY)
                    .is_some_and(|v| v.as_bool().is_ok_and(|b| *b))
                    .then_some(Owner::Nobody),
            }
        });
        if let Some(owner) = &owner {
            self.remember_owner(job_id, owner.clone());
        }
        Ok(owner)
    }

    fn known_owners(&self) -> std::sync::MutexGuard<'_, HashMap<String, Owner>> {
        // The map holds plain strings: one a panicking holder left behind is still whole.
        self.owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remember_owner(&self, job_id: &str, owner: Owner) {
        let mut owners = self.known_owners();
        if owners.len() >= OWNERS_REMEMBERED {
            owners.clear();
        }
        owners.insert(job_id.to_owned(), owner);
    }

    /// [`Store::owner`], waiting up to [`NotifierConfig::owner_wait`] for the job's
    /// `JobRequested`, which travels the bus concurrently with what asks.
    pub async fn wait_owner(&self, job_id: &str) -> Result<Option<String>, StoreError> {
        self.owner_within(job_id, self.config.owner_wait).await
    }

    /// [`Store::owner`], asked again (after 25 ms, then twice as long each time) until it
    /// is known or `wait` has passed.
    pub async fn owner_within(
        &self,
        job_id: &str,
        wait: Duration,
    ) -> Result<Option<String>, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(25);
        loop {
            match self.known_owner(job_id).await? {
                Some(Owner::Sub(sub)) => return Ok(Some(sub)),
                // Known to have none: nothing to wait for.
                Some(Owner::Nobody) => return Ok(None),
                None => {}
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = pause.saturating_mul(2);
        }
    }

    /// Appends an event's frame to the channel at the next offset; see
    /// [`Store::append_then`].
    pub async fn append(
        &self,
        channel: &str,
        event_id: &str,
        kind: &str,
        data: Value,
        correlation_id: Option<String>,
    ) -> Result<Appended, StoreError> {
        let draft = Draft {
            channel,
            event_id,
            kind,
            data,
            correlation_id,
        };
        self.append_then(draft, |appended| async move { appended })
            .await
    }

    /// Appends an event's frame to its channel at the next offset, then runs `then` on
    /// it.
    ///
    /// One `TransactWriteItems` writes the frame at its offset if the offset is free, the
    /// event's marker if the event has none, and the channel's head: either all three or
    /// none. So concurrent writers never share or skip an offset, and an event never
    /// gets two offsets, whether it comes again after a crash or a timeout at any point
    /// (its marker exists exactly when its frame does) or twice at once (EventBridge
    /// delivers a duplicate to two instances: one transaction wins, the other finds the
    /// marker). A frame too large for the gateway is written by reference
    /// ([`Frame::bounded`]). Once the frame is written it is in the history, and `then`
    /// (the broadcast) starts while the frame that falls out of the history is deleted.
    ///
    /// Appends to a channel from one process are also serialized in process, until
    /// their transaction is written: it spares needless conflicts.
    pub async fn append_then<T, F>(
        &self,
        draft: Draft<'_>,
        then: impl FnOnce(Appended) -> F,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = T>,
    {
        let channel = draft.channel;
        let stripe = shard_of(channel, APPEND_STRIPES as u32) as usize;
        let serial = self.appending[stripe].lock().await;
        let (seen, head) = self.marker_and_head(channel, draft.event_id).await?;
        if let Some(frame) = seen {
            drop(serial);
            return Ok(then(Appended::Duplicate(frame)).await);
        }
        let mut offset = next_offset(channel, head)?;
        for _ in 0..MAX_CLAIMS {
            let frame = Frame {
                channel: channel.to_owned(),
                offset,
                kind: draft.kind.to_owned(),
                data: draft.data.clone(),
                correlation_id: draft.correlation_id.clone(),
                data_ref: None,
            };
            let href = crate::data_href(&frame);
            let frame = frame.bounded(href);
            match self.claim(&frame, draft.event_id).await {
                Ok(()) => {
                    drop(serial);
                    let (trimmed, out) =
                        futures::join!(self.trim(channel, offset), then(Appended::New(frame)));
                    if let Err(e) = trimmed {
                        // The frame is written; the one it pushed out expires with its TTL.
                        tracing::warn!(channel = %channel, offset, error = %e, "could not trim the history");
                    }
                    return Ok(out);
                }
                Err(AppendError::Conflict) => {
                    // Why the transaction failed: this event's marker (a concurrent
                    // duplicate won), the offset taken (by another event, or by a frame a
                    // writer of an older deployment left without a head), a head already
                    // past it, or a conflicting transaction (try the same offset again).
                    let (seen, head, taken) =
                        self.after_conflict(channel, draft.event_id, offset).await?;
                    if let Some(frame) = seen {
                        drop(serial);
                        return Ok(then(Appended::Duplicate(frame)).await);
                    }
                    let past = if taken {
                        next_offset(channel, offset)?
                    } else {
                        offset
                    };
                    offset = past.max(next_offset(channel, head)?);
                }
                Err(AppendError::Store(e)) => return Err(e),
            }
        }
        Err(StoreError::new(
            "TransactWriteItems",
            format!("{MAX_CLAIMS} attempts in a row to append to {channel} conflicted"),
        ))
    }

    /// After a failed claim of `offset`: the frame `event_id` got (if any), the head, and
    /// whether `offset` is taken; one consistent `BatchGetItem`.
    async fn after_conflict(
        &self,
        channel: &str,
        event_id: &str,
        offset: u64,
    ) -> Result<(Option<Frame>, u64, bool), StoreError> {
        let marker_sk = format!("event#{event_id}");
        let taken_sk = frame_sk(offset);
        let keys = vec![
            key(chan_pk(channel), marker_sk.clone()),
            key(chan_pk(channel), "head"),
            key(chan_pk(channel), taken_sk.clone()),
        ];
        let (mut seen, mut head, mut taken) = (None, 0, false);
        for item in self
            .get_many_projected(keys, &[SK, "frame", "offset"])
            .await?
        {
            match item.get(SK).and_then(|v| v.as_s().ok()) {
                Some(sk) if *sk == marker_sk => {
                    let Some(frame) = marker_frame(&item) else {
                        // Without its frame the marker would refuse every claim forever.
                        return Err(StoreError::new(
                            "TransactWriteItems",
                            format!("the marker of event {event_id} on {channel} is unreadable"),
                        ));
                    };
                    seen = Some(frame);
                }
                Some(sk) if sk == "head" => head = head_offset(&item),
                Some(sk) if *sk == taken_sk => taken = true,
                _ => {}
            }
        }
        Ok((seen, head, taken))
    }

    /// The frame `event_id` already got on the channel, if any, and the channel's head
    /// hint: one consistent `BatchGetItem`.
    async fn marker_and_head(
        &self,
        channel: &str,
        event_id: &str,
    ) -> Result<(Option<Frame>, u64), StoreError> {
        let marker_sk = format!("event#{event_id}");
        let keys = vec![
            key(chan_pk(channel), marker_sk.clone()),
            key(chan_pk(channel), "head"),
        ];
        let (mut seen, mut head) = (None, 0);
        for item in self.get_many(keys).await? {
            match item.get(SK).and_then(|v| v.as_s().ok()) {
                Some(sk) if *sk == marker_sk => seen = marker_frame(&item),
                Some(sk) if sk == "head" => head = head_offset(&item),
                _ => {}
            }
        }
        Ok((seen, head))
    }

    /// The items at `keys` that exist, read consistently, in no particular order.
    async fn get_many(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        self.get_many_with(keys, None).await
    }

    /// [`Store::get_many`], with only the `attributes` named.
    async fn get_many_projected(
        &self,
        keys: Vec<Item>,
        attributes: &[&str],
    ) -> Result<Vec<Item>, StoreError> {
        self.get_many_with(keys, Some(attributes)).await
    }

    async fn get_many_with(
        &self,
        mut keys: Vec<Item>,
        attributes: Option<&[&str]>,
    ) -> Result<Vec<Item>, StoreError> {
        // Aliases (`#a0`, ...), so that no attribute name can clash with a reserved word.
        let (projection, names) = match attributes {
            Some(names) => (
                Some(
                    (0..names.len())
                        .map(|i| format!("#a{i}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                Some(
                    names
                        .iter()
                        .enumerate()
                        .map(|(i, name)| (format!("#a{i}"), (*name).to_owned()))
                        .collect(),
                ),
            ),
            None => (None, None),
        };
        let mut out = Vec::new();
        // DynamoDB may leave keys unprocessed (throttling, a response over 16 MB); they are
        // asked for again after a growing, jittered pause, as the SDK retries a throttle.
        let mut pauses = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(25))
            .with_max_delay(Duration::from_secs(1))
            .with_max_times(UNPROCESSED_RETRIES)
            .with_jitter()
            .build();
        loop {
            let mut unprocessed = Vec::new();
            // One `BatchGetItem` takes at most 100 keys.
            while !keys.is_empty() {
                let rest = keys.split_off(keys.len().min(BATCH_GET_KEYS));
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::replace(&mut keys, rest)))
                    .consistent_read(true)
                    .set_projection_expression(projection.clone())
                    .set_expression_attribute_names(names.clone())
                    .build()
                    .map_err(|e| StoreError::new("BatchGetItem", e))?;
                let response = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| StoreError::new("BatchGetItem", e.into_service_error()))?;
                out.extend(
                    response
                        .responses
                        .unwrap_or_default()
                        .remove(&self.table)
                        .unwrap_or_default(),
                );
                if let Some(left) = response
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                {
                    unprocessed.extend(left.keys);
                }
            }
            if unprocessed.is_empty() {
                break;
            }
            let Some(pause) = pauses.next() else {
                return Err(StoreError::new(
                    "BatchGetItem",
                    format!(
                        "{} keys were still unprocessed after {UNPROCESSED_RETRIES} retries",
                        unprocessed.len()
                    ),
                ));
            };
            tokio::time::sleep(pause).await;
            keys = unprocessed;
        }
        Ok(out)
    }

    /// The channel's last offset as its `head` item records it (0 when it has none). The
    /// item is written with each frame, in the same transaction, and never expires; a
    /// writer that still finds the next offset taken (a frame an older deployment wrote
    /// before its head) moves on to the one after (see [`Store::append_then`]). A
    /// `GetItem`, not a `Query`: the emulator answers queries by scanning the whole table.
    pub async fn head(&self, channel: &str) -> Result<u64, StoreError> {
        let item = self.get(key(chan_pk(channel), "head")).await?;
        Ok(item.as_ref().map_or(0, head_offset))
    }

    /// Writes, in one transaction, the frame at its offset if the offset is free, the
    /// event's marker if it has none, and the channel's head (moved up, never down).
    ///
    /// The head has no TTL (an `expiresAt` an older deployment gave it is removed):
    /// it outlives the frames, so after the history has expired the next frame still
    /// goes on from the last offset and a client resuming with `since` is told what it
    /// lost instead of skipping frames numbered again from 1.
    async fn claim(&self, frame: &Frame, event_id: &str) -> Result<(), AppendError> {
        let json = serde_json::to_string(frame)
            .map_err(|e| AppendError::Store(StoreError::new("TransactWriteItems", e)))?;
        let channel = &frame.channel;
        let put = |sk: String| {
            let mut item = key(chan_pk(channel), sk);
            item.insert("frame".into(), s(json.clone()));
            item.insert(EXPIRES.into(), expires(self.config.history_ttl));
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map(|put| TransactWriteItem::builder().put(put).build())
                .map_err(|e| AppendError::Store(StoreError::new("TransactWriteItems", e)))
        };
        let head = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(chan_pk(channel), "head")))
            .update_expression("SET #o = :o REMOVE #e")
            .condition_expression("attribute_not_exists(pk) OR #o < :o")
            .expression_attribute_names("#o", "offset")
            .expression_attribute_names("#e", EXPIRES)
            .expression_attribute_values(":o", n(frame.offset))
            .build()
            .map_err(|e| AppendError::Store(StoreError::new("TransactWriteItems", e)))?;
        self.client
            .transact_write_items()
            .transact_items(put(frame_sk(frame.offset))?)
            .transact_items(put(format!("event#{event_id}"))?)
            .transact_items(TransactWriteItem::builder().update(head).build())
            .send()
            .await
            .map_err(|e| {
                let e = e.into_service_error();
                if e.is_transaction_canceled_exception() {
                    AppendError::Conflict
                } else {
                    AppendError::Store(StoreError::new("TransactWriteItems", e))
                }
            })?;
        Ok(())
    }

    /// Deletes the frame that `offset` pushes out of the history, if any.
    async fn trim(&self, channel: &str, offset: u64) -> Result<(), StoreError> {
        if offset <= self.config.history_len {
            return Ok(());
        }
        let dropped = offset - self.config.history_len;
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(chan_pk(channel), frame_sk(dropped))))
            .send()
            .await
            .map_err(|e| StoreError::new("DeleteItem", e.into_service_error()))?;
        Ok(())
    }

    /// Every event appended to `channel` whose marker is still kept, with its frame, in
    /// offset order: which events a channel holds, by event id.
    pub async fn events(&self, channel: &str) -> Result<Vec<(String, Frame)>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :event)")
                .expression_attribute_values(":pk", s(chan_pk(channel)))
                .expression_attribute_values(":event", s("event#"))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::new("Query", e.into_service_error()))?;
            for item in page.items.unwrap_or_default() {
                if expired(&item) {
                    continue;
                }
                let event_id = item
                    .get(SK)
                    .and_then(|v| v.as_s().ok())
                    .and_then(|sk| sk.strip_prefix("event#"))
                    .map(str::to_owned);
                let frame = item
                    .get("frame")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|json| serde_json::from_str::<Frame>(json).ok());
                if let (Some(event_id), Some(frame)) = (event_id, frame) {
                    out.push((event_id, frame));
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        out.sort_by_key(|(_, frame)| frame.offset);
        Ok(out)
    }

    /// The channel's head and the kept frames after `since`, in order.
    pub async fn history(&self, channel: &str, since: u64) -> Result<History, StoreError> {
        let head = self.head(channel).await?;
        let mut frames = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(chan_pk(channel)))
                .expression_attribute_values(":from", s(frame_sk(since.saturating_add(1))))
                // Not bounded by the head: the hint is written after the frame, so a frame
                // claimed and already broadcast (perhaps before this subscriber was
                // added) may lie past it, and a replay that left it out would leave a gap.
                .expression_attribute_values(":to", s(frame_sk(u64::MAX)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::new("Query", e.into_service_error()))?;
            for item in out.items.unwrap_or_default() {
                if expired(&item) {
                    continue;
                }
                let frame = item
                    .get("frame")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|json| serde_json::from_str::<Frame>(json).ok());
                if let Some(frame) = frame {
                    frames.push(frame);
                }
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        // The kept frames are consecutive from the oldest; an expired one in the middle
        // would break that, so keep only the run ending at the newest.
        let mut kept: Vec<Frame> = Vec::with_capacity(frames.len());
        for frame in frames {
            if kept
                .last()
                .is_some_and(|last| last.offset + 1 != frame.offset)
            {
                kept.clear();
            }
            kept.push(frame);
        }
        let head = kept.last().map_or(head, |last| last.offset.max(head));
        Ok(History { head, frames: kept })
    }
}

/// How many taken offsets [`Store::append`] steps over before giving up.
const MAX_CLAIMS: usize = 1000;

/// The offset after `offset` on `channel`.
fn next_offset(channel: &str, offset: u64) -> Result<u64, StoreError> {
    offset.checked_add(1).ok_or_else(|| {
        StoreError::new(
            "TransactWriteItems",
            format!("{channel} has used every offset"),
        )
    })
}

/// Whom a job's `JobRequested` named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The subject that requested the job.
    Sub(String),
    /// Nobody: another service requested the job on the bus.
    Nobody,
}

/// What [`Store::set_owner`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// The job is (now, or already was) this owner's.
    Recorded,
    /// The job was already someone else's: `owner`, who keeps it.
    Refused { owner: String },
}

/// What [`Store::subscribe`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// The connection is subscribed (or already was).
    Added,
    /// The connection already holds [`MAX_CHANNELS_PER_CONNECTION`] channels, or is gone.
    Refused,
}

#[derive(Debug)]
enum AppendError {
    Conflict,
    Store(StoreError),
}

impl From<StoreError> for AppendError {
    fn from(e: StoreError) -> Self {
        AppendError::Store(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(offset: u64) -> Frame {
        Frame {
            channel: "user:a".into(),
            offset,
            kind: "JobProgress".into(),
            data: Value::Null,
            correlation_id: None,
            data_ref: None,
        }
    }

    #[test]
    fn discontinuity_only_when_the_history_does_not_reach_back() {
        let complete = History {
            head: 5,
            frames: (3..=5).map(frame).collect(),
        };
        assert_eq!(complete.discontinuity("user:a", 2), None);
        assert_eq!(complete.discontinuity("user:a", 5), None);
        let lost = complete
            .discontinuity("user:a", 0)
            .expect("1 and 2 are gone");
        assert_eq!(lost.offset, 2);
        assert_eq!(lost.data["reason"], "expired");
        let ahead = complete.discontinuity("user:a", 9).expect("ahead");
        assert_eq!(ahead.offset, 5);
        assert_eq!(ahead.data["reason"], "ahead");
        let empty = History {
            head: 0,
            frames: Vec::new(),
        };
        assert_eq!(empty.discontinuity("user:a", 0), None);
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("abc", 8), shard_of("abc", 8));
        let used: BTreeSet<u32> = (0..100).map(|i| shard_of(&format!("c{i}"), 8)).collect();
        assert_eq!(used.len(), 8);
    }
}
