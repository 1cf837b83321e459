//! ApiVersions: which APIs and versions weir serves (KIP-511 fallback included).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::service::{Outcome, SERVED};

fn ranges() -> Vec<ApiVersion> {
    SERVED
        .iter()
        .map(|&(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(k as i16)
                .with_min_version(lo)
                .with_max_version(hi)
        })
        .collect()
}

/// The v0 answer to an ApiVersions request at a version weir does not serve.
pub(crate) fn unsupported() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(ranges())
}

pub(crate) fn handle(version: i16, req: ApiVersionsRequest) -> Outcome<ApiVersionsResponse> {
    if version >= 3 {
        tracing::debug!(
            client = %req.client_software_name,
            client_version = %req.client_software_version,
            "client connected"
        );
    }
    Outcome::Now(ApiVersionsResponse::default().with_api_keys(ranges()))
}
