//! S3 buckets, with the CORS rule the topology declares.

use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use topology::{Bucket, BucketCors, ResourceKind};

use super::{DeployError, Deployer, Outcome, sdk_error};

impl Deployer<'_> {
    pub(super) async fn bucket(&mut self, bucket: &Bucket) -> Result<(), DeployError> {
        let name = bucket.name.as_str();
        let kind = ResourceKind::Bucket;
        let physical = self.names.bucket(name);
        let outcome = match self.s3.head_bucket().bucket(&physical).send().await {
            Ok(_) => Outcome::Unchanged,
            Err(e)
                if e.as_service_error().is_some_and(|e| e.is_not_found())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                let mut create = self.s3.create_bucket().bucket(&physical);
                // us-east-1 is the one region that takes no location constraint.
                if let Some(region) = self.region.as_deref().filter(|r| *r != "us-east-1") {
                    create = create.create_bucket_configuration(
                        aws_sdk_s3::types::CreateBucketConfiguration::builder()
                            .location_constraint(region.into())
                            .build(),
                    );
                }
                create
                    .send()
                    .await
                    .map_err(sdk_error(kind, &physical, "CreateBucket"))?;
                Outcome::Created
            }
            Err(e) => return Err(sdk_error(kind, &physical, "HeadBucket")(e)),
        };
        let outcome = match self.bucket_cors(&physical, bucket.cors.as_ref()).await? {
            true if outcome == Outcome::Unchanged => Outcome::Updated,
            _ => outcome,
        };
        let arn = format!("arn:{}:s3:::{physical}", self.partition);
        self.record(kind, name, &physical, Some(arn), None, outcome);
        Ok(())
    }
}

impl Deployer<'_> {
    /// Makes the bucket's CORS rules exactly `cors`; whether anything changed.
    async fn bucket_cors(
        &mut self,
        physical: &str,
        cors: Option<&BucketCors>,
    ) -> Result<bool, DeployError> {
        let kind = ResourceKind::Bucket;
        let wanted: Vec<CorsRule> = match cors {
            None => Vec::new(),
            Some(cors) => {
                let mut rule = CorsRule::builder()
                    .max_age_seconds(i32::try_from(cors.max_age_secs).unwrap_or(i32::MAX));
                for origin in &cors.allowed_origins {
                    rule = rule.allowed_origins(origin);
                }
                for method in BucketCors::METHODS {
                    rule = rule.allowed_methods(method);
                }
                vec![rule.build().map_err(|e| DeployError::Conflict {
                    kind,
                    name: physical.to_owned(),
                    reason: format!("invalid CORS rule: {e}"),
                })?]
            }
        };
        let current = match self.s3.get_bucket_cors().bucket(physical).send().await {
            Ok(answer) => answer.cors_rules().to_vec(),
            // No configuration yet: S3 answers NoSuchCORSConfiguration (404).
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Vec::new(),
            Err(e) => return Err(sdk_error(kind, physical, "GetBucketCors")(e)),
        };
        if current == wanted {
            return Ok(false);
        }
        if wanted.is_empty() {
            self.s3
                .delete_bucket_cors()
                .bucket(physical)
                .send()
                .await
                .map_err(sdk_error(kind, physical, "DeleteBucketCors"))?;
        } else {
            let configuration = CorsConfiguration::builder()
                .set_cors_rules(Some(wanted))
                .build()
                .map_err(|e| DeployError::Conflict {
                    kind,
                    name: physical.to_owned(),
                    reason: format!("invalid CORS configuration: {e}"),
                })?;
            self.s3
                .put_bucket_cors()
                .bucket(physical)
                .cors_configuration(configuration)
                .send()
                .await
                .map_err(sdk_error(kind, physical, "PutBucketCors"))?;
        }
        Ok(true)
    }
}
