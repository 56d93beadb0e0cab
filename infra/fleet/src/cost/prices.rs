//! The list prices `fleet cost` multiplies by, for us-east-1 only, each with its source
//! and the day it was read.
//!
//! A test fails once [`READ_ON`] is more than [`MAX_AGE_DAYS`] old, so the table gets
//! revisited at least once a year. To revisit it: open each source, update the figures
//! that changed, set `read_on` of each row read and [`READ_ON`] to the day, and run the
//! tests (`model`'s hand-computed case pins the arithmetic, not the prices).
//!
//! The figures are AWS's public on-demand list prices for US East (N. Virginia), first
//! tier (the fleet's volumes stay far below the next tier of every dimension), for arm64
//! Lambda and Linux/ARM Fargate (what the topology deploys).

use time::{Date, macros::date};

/// The only region priced. Other regions differ by service, and no multiplier is
/// published, so `fleet cost --region` refuses them rather than guess.
pub const REGION: &str = "us-east-1";

/// The day the table was last read as a whole (every row's `read_on` is at or after it).
pub const READ_ON: Date = date!(2026 - 12 - 07);

/// How old [`READ_ON`] may get before a test fails.
pub const MAX_AGE_DAYS: i64 = 365;

/// What a price is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    /// EventBridge custom events put on a bus, per 64 KB chunk of each entry.
    EventBridgeEvents,
    /// SQS standard queue requests, per 64 KB chunk of each request.
    SqsRequests,
    /// SNS standard topic publishes, per 64 KB chunk (deliveries to SQS are free).
    SnsPublishes,
    /// Step Functions Standard state transitions.
    StateTransitions,
    /// Lambda requests.
    LambdaRequests,
    /// Lambda compute on arm64, per GB-second.
    LambdaGbSeconds,
    /// DynamoDB on-demand write request units (1 KB each).
    DynamoDbWriteUnits,
    /// DynamoDB on-demand read request units (4 KB strongly consistent each).
    DynamoDbReadUnits,
    /// DynamoDB Standard table storage, per GB-month.
    DynamoDbStorage,
    /// S3 Standard PUT, COPY, POST and LIST requests.
    S3Puts,
    /// S3 Standard GET and other reads.
    S3Gets,
    /// S3 Standard storage, per GB-month.
    S3Storage,
    /// API Gateway HTTP API requests (per 512 KB).
    HttpRequests,
    /// API Gateway WebSocket messages, sent or received (per 32 KB).
    WebSocketMessages,
    /// API Gateway WebSocket connection minutes.
    WebSocketMinutes,
    /// Fargate Linux/ARM, per vCPU-hour.
    FargateVcpuHours,
    /// Fargate Linux/ARM, per GB-hour.
    FargateGbHours,
    /// CloudWatch Logs standard ingestion, per GB.
    LogsIngestion,
    /// CloudWatch Logs storage, per GB-month.
    LogsStorage,
}

/// One list price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub dimension: Dimension,
    /// The service as its bill names it.
    pub service: &'static str,
    /// What is counted, as a person reads it.
    pub unit: &'static str,
    /// US dollars per `per` units.
    pub usd: f64,
    pub per: f64,
    /// The units AWS gives every account each month for free, forever (the always-free
    /// tier; 12-month trial tiers are left out: they end). 0 when there is none.
    pub free_per_month: f64,
    /// The page the figure was read from.
    pub source: &'static str,
    pub read_on: Date,
}

impl Price {
    /// Dollars per single unit.
    pub fn unit_usd(&self) -> f64 {
        self.usd / self.per
    }
}

const M: f64 = 1_000_000.0;

/// The table. Keep one row per [`Dimension`], in its order.
pub const PRICES: [Price; 19] = [
    Price {
        dimension: Dimension::EventBridgeEvents,
        service: "EventBridge",
        unit: "custom events (64 KB chunks)",
        usd: 1.00,
        per: M,
        free_per_month: 0.0,
        source: "https://aws.amazon.com/eventbridge/pricing/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::SqsRequests,
        service: "SQS",
        unit: "standard requests (64 KB chunks)",
        usd: 0.40,
        per: M,
        free_per_month: M,
        source: "https://aws.amazon.com/sqs/pricing/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::SnsPublishes,
        service: "SNS",
        unit: "standard publishes (64 KB chunks)",
        usd: 0.50,
        per: M,
        free_per_month: M,
        source: "https://aws.amazon.com/sns/pricing/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::StateTransitions,
        service: "Step Functions",
        unit: "standard state transitions",
        usd: 0.025,
        per: 1000.0,
        free_per_month: 4000.0,
        source: "https://aws.amazon.com/step-functions/pricing/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::LambdaRequests,
        service: "Lambda",
        unit: "requests",
        usd: 0.20,
        per: M,
        free_per_month: M,
        source: "https://aws.amazon.com/lambda/pricing/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::LambdaGbSeconds,
        service: "Lambda",
        unit: "GB-seconds (arm64)",
        usd: 0.000_013_333_4,
        per: 1.0,
        free_per_month: 400_000.0,
        source: "https://aws.amazon.com/lambda/pricing/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::DynamoDbWriteUnits,
        service: "DynamoDB",
        unit: "on-demand write request units",
        usd: 0.625,
        per: M,
        free_per_month: 0.0,
        source: "https://aws.amazon.com/dynamodb/pricing/on-demand/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::DynamoDbReadUnits,
        service: "DynamoDB",
        unit: "on-demand read request units",
        usd: 0.125,
        per: M,
        free_per_month: 0.0,
        source: "https://aws.amazon.com/dynamodb/pricing/on-demand/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::DynamoDbStorage,
        service: "DynamoDB",
        unit: "GB-months stored",
        usd: 0.25,
        per: 1.0,
        free_per_month: 25.0,
        source: "https://aws.amazon.com/dynamodb/pricing/on-demand/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::S3Puts,
        service: "S3",
        unit: "PUT/COPY/POST/LIST requests",
        usd: 0.005,
        per: 1000.0,
        free_per_month: 0.0,
        source: "https://aws.amazon.com/s3/pricing/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::S3Gets,
        service: "S3",
        unit: "GET and other requests",
        usd: 0.0004,
        per: 1000.0,
        free_per_month: 0.0,
        source: "https://aws.amazon.com/s3/pricing/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::S3Storage,
        service: "S3",
        unit: "GB-months stored (Standard)",
        usd: 0.023,
        per: 1.0,
        free_per_month: 0.0,
        source: "https://aws.amazon.com/s3/pricing/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::HttpRequests,
        service: "API Gateway",
        unit: "HTTP API requests",
        usd: 1.00,
        per: M,
        free_per_month: 0.0,
        source: "https://aws.amazon.com/api-gateway/pricing/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::WebSocketMessages,
        service: "API Gateway",
        unit: "WebSocket messages (32 KB)",
        usd: 1.00,
        per: M,
        free_per_month: 0.0,
        source: "https://aws.amazon.com/api-gateway/pricing/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::WebSocketMinutes,
        service: "API Gateway",
        unit: "WebSocket connection minutes",
        usd: 0.25,
        per: M,
        free_per_month: 0.0,
        source: "https://aws.amazon.com/api-gateway/pricing/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::FargateVcpuHours,
        service: "Fargate",
        unit: "vCPU-hours (Linux/ARM)",
        usd: 0.032_38,
        per: 1.0,
        free_per_month: 0.0,
        source: "https://aws.amazon.com/fargate/pricing/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::FargateGbHours,
        service: "Fargate",
        unit: "GB-hours (Linux/ARM)",
        usd: 0.003_56,
        per: 1.0,
        free_per_month: 0.0,
        source: "https://aws.amazon.com/fargate/pricing/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::LogsIngestion,
        service: "CloudWatch Logs",
        unit: "GB ingested (standard)",
        usd: 0.50,
        per: 1.0,
        free_per_month: 5.0,
        source: "https://aws.amazon.com/cloudwatch/pricing/",
        read_on: READ_ON,
    },
    Price {
        dimension: Dimension::LogsStorage,
        service: "CloudWatch Logs",
        unit: "GB-months archived",
        usd: 0.03,
        per: 1.0,
        free_per_month: 0.0,
        source: "https://aws.amazon.com/cloudwatch/pricing/",
        read_on: READ_ON,
    },
];

/// The price of a dimension.
pub fn price(dimension: Dimension) -> &'static Price {
    PRICES
        .iter()
        .find(|p| p.dimension == dimension)
        .unwrap_or_else(|| panic!("invariant: PRICES has a row for {dimension:?}"))
}

/// Whether the table was read within [`MAX_AGE_DAYS`] of `today`: `Err` says how old it
/// is and what to do.
pub fn check_fresh(today: Date) -> Result<(), String> {
    let age = (today - READ_ON).whole_days();
    if age > MAX_AGE_DAYS {
        return Err(format!(
            "the price table (infra/fleet/src/cost/prices.rs) was read on {READ_ON}, {age} days ago: \
             re-read every source, update the figures and READ_ON"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_price_table_is_less_than_a_year_old() {
        let today = time::OffsetDateTime::now_utc().date();
        if let Err(stale) = check_fresh(today) {
            panic!("{stale}");
        }
    }

    #[test]
    fn a_table_read_more_than_a_year_ago_is_stale() {
        assert!(check_fresh(READ_ON).is_ok());
        assert!(check_fresh(date!(2027 - 12 - 07)).is_ok());
        assert!(check_fresh(date!(2027 - 12 - 08)).is_err());
    }

    #[test]
    fn every_dimension_has_one_row_with_a_source_and_a_date() {
        for (i, p) in PRICES.iter().enumerate() {
            assert_eq!(
                PRICES.iter().filter(|q| q.dimension == p.dimension).count(),
                1,
                "{:?} is priced twice",
                p.dimension
            );
            assert!(
                i == 0 || PRICES[i - 1].dimension < p.dimension,
                "rows in Dimension order"
            );
            assert!(p.source.starts_with("https://aws.amazon.com/"), "{p:?}");
            assert!(p.read_on >= READ_ON, "{p:?} was read before the table");
            assert!(p.usd > 0.0 && p.per > 0.0 && p.free_per_month >= 0.0);
        }
    }
}
