//! Helpers shared by the tests over the real log.

use serde::de::DeserializeOwned;
use weir_log::{Log, StoredRecord};

/// Every record of every partition of `topic`, partition by partition.
pub fn read_all(log: &Log, topic: &str) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    for p in 0..log.topic(topic).unwrap().partitions {
        let mut at = 0;
        loop {
            let f = log.read(topic, p, at, 1 << 20).unwrap();
            let recs = f.decode_from(at).unwrap();
            let Some(last) = recs.last() else { break };
            at = last.offset + 1;
            out.extend(recs);
        }
    }
    out
}

/// The JSON values of [`read_all`].
#[allow(dead_code, reason = "not every test binary reads JSON")]
pub fn read_json<T: DeserializeOwned>(log: &Log, topic: &str) -> Vec<T> {
    read_all(log, topic)
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
        .collect()
}
