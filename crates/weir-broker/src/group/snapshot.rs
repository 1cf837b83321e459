//! A stable group's membership as bytes, so a restarted broker knows its groups: members
//! keep their ids and generation, and carry on without a rebalance (as Kafka's groups do,
//! whose metadata lives in `__consumer_offsets`).
//!
//! Layout (big-endian): format version (u8), generation (i32), protocol type, protocol and
//! leader (strings), then the members: id, instance id (optional), client id, client host,
//! session and rebalance timeouts (u64 ms), protocols (name, metadata), assignment.
//! Strings and byte fields are a u32 length and the bytes.

use std::time::Duration;

use bytes::Bytes;

const FORMAT: u8 = 1;

/// A stable group as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupSnapshot {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub members: Vec<MemberSnapshot>,
}

/// One member of a stored group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberSnapshot {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn put_ms(out: &mut Vec<u8>, d: Duration) {
    out.extend_from_slice(&(d.as_millis() as u64).to_be_bytes());
}

impl GroupSnapshot {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        out.extend_from_slice(&self.generation.to_be_bytes());
        for s in [&self.protocol_type, &self.protocol, &self.leader] {
            put_bytes(&mut out, s.as_bytes());
        }
        out.extend_from_slice(&(self.members.len() as u32).to_be_bytes());
        for m in &self.members {
            put_bytes(&mut out, m.id.as_bytes());
            match &m.instance_id {
                Some(i) => {
                    out.push(1);
                    put_bytes(&mut out, i.as_bytes());
                }
                None => out.push(0),
            }
            put_bytes(&mut out, m.client_id.as_bytes());
            put_bytes(&mut out, m.client_host.as_bytes());
            put_ms(&mut out, m.session_timeout);
            put_ms(&mut out, m.rebalance_timeout);
            out.extend_from_slice(&(m.protocols.len() as u32).to_be_bytes());
            for (name, metadata) in &m.protocols {
                put_bytes(&mut out, name.as_bytes());
                put_bytes(&mut out, metadata);
            }
            put_bytes(&mut out, &m.assignment);
        }
        out
    }

    /// The snapshot in `b`, or `None` if it is not one this version wrote.
    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Reader(b);
        if r.take(1)? != [FORMAT] {
            return None;
        }
        let generation = i32::from_be_bytes(r.take(4)?.try_into().ok()?);
        let protocol_type = r.string()?;
        let protocol = r.string()?;
        let leader = r.string()?;
        let count = r.u32()?;
        let mut members = Vec::new();
        for _ in 0..count {
            let id = r.string()?;
            let instance_id = match r.take(1)?[0] {
                0 => None,
                _ => Some(r.string()?),
            };
            let client_id = r.string()?;
            let client_host = r.string()?;
            let session_timeout = r.ms()?;
            let rebalance_timeout = r.ms()?;
            let mut protocols = Vec::new();
            for _ in 0..r.u32()? {
                let name = r.string()?;
                protocols.push((name, Bytes::copy_from_slice(r.bytes()?)));
            }
            let assignment = Bytes::copy_from_slice(r.bytes()?);
            members.push(MemberSnapshot {
                id,
                instance_id,
                client_id,
                client_host,
                session_timeout,
                rebalance_timeout,
                protocols,
                assignment,
            });
        }
        r.0.is_empty().then_some(Self {
            generation,
            protocol_type,
            protocol,
            leader,
            members,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn ms(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(u64::from_be_bytes(
            self.take(8)?.try_into().ok()?,
        )))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let s = GroupSnapshot {
            generation: 7,
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            leader: "a".into(),
            members: vec![
                MemberSnapshot {
                    id: "a".into(),
                    instance_id: Some("host-1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    session_timeout: Duration::from_secs(10),
                    rebalance_timeout: Duration::from_secs(300),
                    protocols: vec![("range".into(), Bytes::from_static(b"md"))],
                    assignment: Bytes::from_static(b"p0"),
                },
                MemberSnapshot {
                    id: "b".into(),
                    instance_id: None,
                    client_id: String::new(),
                    client_host: String::new(),
                    session_timeout: Duration::from_millis(1500),
                    rebalance_timeout: Duration::ZERO,
                    protocols: Vec::new(),
                    assignment: Bytes::new(),
                },
            ],
        };
        let b = s.encode();
        assert_eq!(GroupSnapshot::decode(&b), Some(s));
        for cut in 0..b.len() {
            assert_eq!(GroupSnapshot::decode(&b[..cut]), None, "cut at {cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(GroupSnapshot::decode(&long), None);
    }
}
