//! S3 buckets.

use topology::ResourceKind;

use super::{DeployError, Deployer, Outcome, sdk_error};

impl Deployer<'_> {
    pub(super) async fn bucket(&mut self, name: &str) -> Result<(), DeployError> {
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
        let arn = format!("arn:{}:s3:::{physical}", self.partition);
        self.record(kind, name, &physical, Some(arn), None, outcome);
        Ok(())
    }
}
