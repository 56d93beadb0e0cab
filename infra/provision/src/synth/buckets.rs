//! S3 buckets: private, encrypted, owner-enforced, with the CORS rule the topology declares.

use serde_json::json;

use topology::{Bucket, BucketCors};

use super::Synth;
use super::values::Kind;

impl Synth<'_> {
    pub(super) fn bucket(&mut self, at: usize, b: &Bucket) {
        self.exported(at, Kind::Bucket, &b.name);
        let mut properties = json!({
            "BucketName": self.names.bucket(&b.name),
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": true,
                "BlockPublicPolicy": true,
                "IgnorePublicAcls": true,
                "RestrictPublicBuckets": true,
            },
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    { "ServerSideEncryptionByDefault": { "SSEAlgorithm": "AES256" } }
                ]
            },
            "OwnershipControls": { "Rules": [ { "ObjectOwnership": "BucketOwnerEnforced" } ] },
        });
        if let (Some(cors), Some(fields)) = (&b.cors, properties.as_object_mut()) {
            fields.insert(
                "CorsConfiguration".to_owned(),
                json!({ "CorsRules": [{
                    "AllowedOrigins": cors.allowed_origins,
                    "AllowedMethods": BucketCors::METHODS,
                    "MaxAge": cors.max_age_secs,
                }] }),
            );
        }
        self.stacks[at].resource(
            Kind::Bucket.logical_id(&b.name),
            "AWS::S3::Bucket",
            properties,
        );
    }
}
