//! Results and parameters as a user meets them on the local stack: a `sir` job's result
//! downloaded through `GET /jobs/{id}/result` (what `fleet jobs result` does) and readable
//! cross-origin by the dashboard only because the results bucket declares a CORS rule, and
//! an out-of-range parameter refused at submit.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use contracts::jobs::JobStatus;
use serde_json::{Value, json};

use crate::support::Local;

const LIMIT: u64 = 16 << 20;

#[tokio::test]
async fn a_sir_result_is_downloaded_through_its_link_and_readable_by_the_dashboards_origin() {
    let local = Local::start().await;
    let alice = local.api("alice");
    let params = json!({"population": 2000, "initialInfected": 5, "beta": 0.4, "gamma": 0.1, "sigma": 0.25, "days": 40, "runs": 10, "seed": 7});
    let job = alice.submit("sir", &params, None).await.unwrap();
    let view = alice.wait(&job, Duration::from_secs(60)).await.unwrap();
    assert_eq!(view.status, JobStatus::Succeeded, "{view:?}");

    // `fleet jobs result`: the link, then the stored result behind it.
    let bytes = alice.result(&job, LIMIT).await.unwrap();
    let result: Value = serde_json::from_slice(&bytes).unwrap();
    for compartment in ["susceptible", "exposed", "infected", "recovered"] {
        for key in ["p5", "p50", "p95"] {
            let series = result[compartment][key].as_array();
            assert_eq!(
                series.map(Vec::len),
                Some(41),
                "{compartment}.{key}: a value per day, days 0 to 40"
            );
        }
    }
    // A result larger than the client's limit is refused, not written.
    let err = alice.result(&job, 10).await.unwrap_err();
    assert!(err.to_string().contains("larger than 10 bytes"), "{err}");

    // The dashboard's origin may read the link's answer: the bucket's CORS rule says so.
    let link = alice.result_link(&job).await.unwrap();
    assert!(link.starts_with("http://127.0.0.1:"), "{link}");
    let origin = local.api_base.clone();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer = http
        .get(&link)
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let allowed = answer
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        allowed.as_deref() == Some(origin.as_str()) || allowed.as_deref() == Some("*"),
        "the results bucket lets {origin} read the link: {allowed:?}"
    );

    // Another user, and an unknown job, are told the same: not found.
    let mallory = local.api("mallory");
    let err = mallory.result(&job, LIMIT).await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    local.stop().await;
}

/// moto answers every request with `Access-Control-Allow-Origin: *` unless told not to;
/// AWS only as a bucket's CORS rules say. The launcher makes it AWS's way, so the
/// results bucket's rule is what the dashboard depends on, locally as on AWS.
#[tokio::test]
async fn a_bucket_without_a_cors_rule_gives_browsers_nothing_as_on_aws() {
    let sdk = emulator::test_emulator().await.sdk_config();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let bucket = emulator::unique_name("no-cors");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("x.json")
        .body(b"{}".to_vec().into())
        .send()
        .await
        .unwrap();
    let link = s3
        .get_object()
        .bucket(&bucket)
        .key("x.json")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer = http
        .get(link.uri())
        .header("origin", "http://127.0.0.1:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "the link itself works");
    assert_eq!(
        answer.headers().get("access-control-allow-origin"),
        None,
        "no CORS rule, no cross-origin read"
    );
}

#[tokio::test]
async fn an_out_of_range_sir_parameter_is_refused_at_submit_and_nothing_runs() {
    let local = Local::start().await;
    let carol = local.api("carol");
    let params =
        json!({"population": 100, "initialInfected": 500, "beta": 0.3, "gamma": 0.1, "days": 30});
    let err = carol.submit("sir", &params, None).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("params.initialInfected")
            && message.contains("must be between 1 and population (100), got 500"),
        "{message}"
    );
    assert!(
        carol.list(None).await.unwrap().is_empty(),
        "no job was recorded"
    );
    local.stop().await;
}
