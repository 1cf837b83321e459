//! Known APIs weir does not serve: an error response where kafka-protocol can encode one, so
//! the client fails with a clear error instead of a dropped connection; otherwise the
//! connection is closed.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, DescribeClusterResponse, SaslHandshakeResponse};

use crate::service::{Handled, Reply, encode};

const NOT_SERVED: ResponseError = ResponseError::UnsupportedVersion;

macro_rules! top_level_error {
    ($resp:ty, $corr:expr, $version:expr) => {{
        let mut r = <$resp>::default();
        r.error_code = NOT_SERVED.code();
        encode($corr, $version, &r)
    }};
}

pub(crate) fn reply(api: ApiKey, version: i16, correlation_id: i32) -> Handled {
    let valid = api.valid_versions();
    if !(valid.min..=valid.max).contains(&version) {
        return Handled::Ready(Reply::Close(format!(
            "{api:?} v{version} is neither served by weir nor known to its protocol library"
        )));
    }
    tracing::warn!(api = ?api, version, "request for an API weir does not serve");
    let (c, v) = (correlation_id, version);
    let reply = match api {
        ApiKey::DescribeCluster => top_level_error!(DescribeClusterResponse, c, v),
        // No SASL: no mechanism is enabled, which is what the mechanism list says.
        ApiKey::SaslHandshake => encode(
            c,
            v,
            &SaslHandshakeResponse::default()
                .with_error_code(ResponseError::UnsupportedSaslMechanism.code()),
        ),
        other => Reply::Close(format!(
            "{other:?} is not served by weir (see ApiVersions for what is)"
        )),
    };
    Handled::Ready(reply)
}
