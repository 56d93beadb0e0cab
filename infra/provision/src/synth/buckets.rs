//! S3 buckets: private, encrypted, owner-enforced.

use serde_json::json;

use topology::Bucket;

use super::Synth;
use super::values::Kind;

impl Synth<'_> {
    pub(super) fn bucket(&mut self, at: usize, b: &Bucket) {
        self.exported(at, Kind::Bucket, &b.name);
        self.stacks[at].resource(
            Kind::Bucket.logical_id(&b.name),
            "AWS::S3::Bucket",
            json!({
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
            }),
        );
    }
}
