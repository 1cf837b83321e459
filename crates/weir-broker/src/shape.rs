//! A walk over a request body that checks its shape before kafka-protocol decodes it.
//!
//! kafka-protocol 0.18 sizes a `Vec` from an array's length prefix before reading any element,
//! so a 10-byte request claiming 2^31 elements makes it allocate gigabytes and abort the
//! process. Every element takes at least one byte on the wire, so this walk refuses any
//! array, string or byte field that claims more than the bytes left, before kafka-protocol reads it.
//! After it passes, decoding allocates in proportion to the frame.

use kafka_protocol::messages::ApiKey;

/// The wire type of one field.
#[derive(Debug, Clone, Copy)]
enum Ty {
    Fixed(usize),
    Str,
    Bytes,
    Array(&'static [Field]),
    /// An array of a fixed-size primitive.
    FixedArray(usize),
    StrArray,
}

/// A field present in versions `min..=max`.
#[derive(Debug, Clone, Copy)]
struct Field {
    min: i16,
    max: i16,
    ty: Ty,
}

const fn f(min: i16, max: i16, ty: Ty) -> Field {
    Field { min, max, ty }
}

const ALL: i16 = i16::MAX;
const I8: Ty = Ty::Fixed(1);
const BOOL: Ty = Ty::Fixed(1);
const I16: Ty = Ty::Fixed(2);
const I32: Ty = Ty::Fixed(4);
const I64: Ty = Ty::Fixed(8);
const UUID: Ty = Ty::Fixed(16);

const API_VERSIONS: &[Field] = &[f(3, ALL, Ty::Str), f(3, ALL, Ty::Str)];

const METADATA_TOPIC: &[Field] = &[f(10, ALL, UUID), f(0, ALL, Ty::Str)];
const METADATA: &[Field] = &[
    f(0, ALL, Ty::Array(METADATA_TOPIC)),
    f(4, ALL, BOOL),
    f(8, 10, BOOL),
    f(8, ALL, BOOL),
];

const PRODUCE_PARTITION: &[Field] = &[f(0, ALL, I32), f(0, ALL, Ty::Bytes)];
const PRODUCE_TOPIC: &[Field] = &[
    f(0, 12, Ty::Str),
    f(13, ALL, UUID),
    f(0, ALL, Ty::Array(PRODUCE_PARTITION)),
];
const PRODUCE: &[Field] = &[
    f(3, ALL, Ty::Str),
    f(0, ALL, I16),
    f(0, ALL, I32),
    f(0, ALL, Ty::Array(PRODUCE_TOPIC)),
];

const FETCH_PARTITION: &[Field] = &[
    f(0, ALL, I32),
    f(9, ALL, I32),
    f(0, ALL, I64),
    f(12, ALL, I32),
    f(5, ALL, I64),
    f(0, ALL, I32),
];
const FETCH_TOPIC: &[Field] = &[
    f(0, 12, Ty::Str),
    f(13, ALL, UUID),
    f(0, ALL, Ty::Array(FETCH_PARTITION)),
];
const FETCH_FORGOTTEN: &[Field] = &[
    f(7, 12, Ty::Str),
    f(13, ALL, UUID),
    f(7, ALL, Ty::FixedArray(4)),
];
const FETCH: &[Field] = &[
    f(0, 14, I32),
    f(0, ALL, I32),
    f(0, ALL, I32),
    f(3, ALL, I32),
    f(4, ALL, I8),
    f(7, ALL, I32),
    f(7, ALL, I32),
    f(0, ALL, Ty::Array(FETCH_TOPIC)),
    f(7, ALL, Ty::Array(FETCH_FORGOTTEN)),
    f(11, ALL, Ty::Str),
];

const LIST_OFFSETS_PARTITION: &[Field] = &[f(0, ALL, I32), f(4, ALL, I32), f(0, ALL, I64)];
const LIST_OFFSETS_TOPIC: &[Field] = &[
    f(0, ALL, Ty::Str),
    f(0, ALL, Ty::Array(LIST_OFFSETS_PARTITION)),
];
const LIST_OFFSETS: &[Field] = &[
    f(0, ALL, I32),
    f(2, ALL, I8),
    f(0, ALL, Ty::Array(LIST_OFFSETS_TOPIC)),
    f(10, ALL, I32),
];

const CREATE_ASSIGNMENT: &[Field] = &[f(0, ALL, I32), f(0, ALL, Ty::FixedArray(4))];
const CREATE_CONFIG: &[Field] = &[f(0, ALL, Ty::Str), f(0, ALL, Ty::Str)];
const CREATE_TOPIC: &[Field] = &[
    f(0, ALL, Ty::Str),
    f(0, ALL, I32),
    f(0, ALL, I16),
    f(0, ALL, Ty::Array(CREATE_ASSIGNMENT)),
    f(0, ALL, Ty::Array(CREATE_CONFIG)),
];
const CREATE_TOPICS: &[Field] = &[
    f(0, ALL, Ty::Array(CREATE_TOPIC)),
    f(0, ALL, I32),
    f(1, ALL, BOOL),
];

const DELETE_TOPIC: &[Field] = &[f(6, ALL, Ty::Str), f(6, ALL, UUID)];
const DELETE_TOPICS: &[Field] = &[
    f(6, ALL, Ty::Array(DELETE_TOPIC)),
    f(0, 5, Ty::StrArray),
    f(0, ALL, I32),
];

const DESCRIBE_RESOURCE: &[Field] = &[f(0, ALL, I8), f(0, ALL, Ty::Str), f(0, ALL, Ty::StrArray)];
const DESCRIBE_CONFIGS: &[Field] = &[
    f(0, ALL, Ty::Array(DESCRIBE_RESOURCE)),
    f(1, ALL, BOOL),
    f(3, ALL, BOOL),
];

const INIT_PRODUCER_ID: &[Field] = &[
    f(0, ALL, Ty::Str),
    f(0, ALL, I32),
    f(3, ALL, I64),
    f(3, ALL, I16),
];

const DELETE_RECORDS_PARTITION: &[Field] = &[f(0, ALL, I32), f(0, ALL, I64)];
const DELETE_RECORDS_TOPIC: &[Field] = &[
    f(0, ALL, Ty::Str),
    f(0, ALL, Ty::Array(DELETE_RECORDS_PARTITION)),
];
const DELETE_RECORDS: &[Field] = &[f(0, ALL, Ty::Array(DELETE_RECORDS_TOPIC)), f(0, ALL, I32)];

const FIND_COORDINATOR: &[Field] = &[f(0, 3, Ty::Str), f(1, ALL, I8), f(4, ALL, Ty::StrArray)];

const JOIN_GROUP_PROTOCOL: &[Field] = &[f(0, ALL, Ty::Str), f(0, ALL, Ty::Bytes)];
const JOIN_GROUP: &[Field] = &[
    f(0, ALL, Ty::Str),
    f(0, ALL, I32),
    f(1, ALL, I32),
    f(0, ALL, Ty::Str),
    f(5, ALL, Ty::Str),
    f(0, ALL, Ty::Str),
    f(0, ALL, Ty::Array(JOIN_GROUP_PROTOCOL)),
    f(8, ALL, Ty::Str),
];

const SYNC_GROUP_ASSIGNMENT: &[Field] = &[f(0, ALL, Ty::Str), f(0, ALL, Ty::Bytes)];
const SYNC_GROUP: &[Field] = &[
    f(0, ALL, Ty::Str),
    f(0, ALL, I32),
    f(0, ALL, Ty::Str),
    f(3, ALL, Ty::Str),
    f(5, ALL, Ty::Str),
    f(5, ALL, Ty::Str),
    f(0, ALL, Ty::Array(SYNC_GROUP_ASSIGNMENT)),
];

const HEARTBEAT: &[Field] = &[
    f(0, ALL, Ty::Str),
    f(0, ALL, I32),
    f(0, ALL, Ty::Str),
    f(3, ALL, Ty::Str),
];

const LEAVE_GROUP_MEMBER: &[Field] = &[f(3, ALL, Ty::Str), f(3, ALL, Ty::Str), f(5, ALL, Ty::Str)];
const LEAVE_GROUP: &[Field] = &[
    f(0, ALL, Ty::Str),
    f(0, 2, Ty::Str),
    f(3, ALL, Ty::Array(LEAVE_GROUP_MEMBER)),
];

const OFFSET_COMMIT_PARTITION: &[Field] = &[
    f(0, ALL, I32),
    f(0, ALL, I64),
    f(6, ALL, I32),
    f(1, 1, I64),
    f(0, ALL, Ty::Str),
];
const OFFSET_COMMIT_TOPIC: &[Field] = &[
    f(0, ALL, Ty::Str),
    f(0, ALL, Ty::Array(OFFSET_COMMIT_PARTITION)),
];
const OFFSET_COMMIT: &[Field] = &[
    f(0, ALL, Ty::Str),
    f(1, ALL, I32),
    f(1, ALL, Ty::Str),
    f(7, ALL, Ty::Str),
    f(2, 4, I64),
    f(0, ALL, Ty::Array(OFFSET_COMMIT_TOPIC)),
];

const OFFSET_FETCH_TOPIC: &[Field] = &[f(0, ALL, Ty::Str), f(0, ALL, Ty::FixedArray(4))];
const OFFSET_FETCH_GROUP: &[Field] = &[
    f(8, ALL, Ty::Str),
    f(9, ALL, Ty::Str),
    f(9, ALL, I32),
    f(8, ALL, Ty::Array(OFFSET_FETCH_TOPIC)),
];
const OFFSET_FETCH: &[Field] = &[
    f(0, 7, Ty::Str),
    f(0, 7, Ty::Array(OFFSET_FETCH_TOPIC)),
    f(8, ALL, Ty::Array(OFFSET_FETCH_GROUP)),
    f(7, ALL, BOOL),
];

const DESCRIBE_GROUPS: &[Field] = &[f(0, ALL, Ty::StrArray), f(3, ALL, BOOL)];
const LIST_GROUPS: &[Field] = &[f(4, ALL, Ty::StrArray), f(5, ALL, Ty::StrArray)];
const DELETE_GROUPS: &[Field] = &[f(0, ALL, Ty::StrArray)];

/// The body schema of a request weir decodes, and the first flexible version.
fn schema(api: ApiKey) -> Option<(&'static [Field], i16)> {
    Some(match api {
        ApiKey::ApiVersions => (API_VERSIONS, 3),
        ApiKey::Metadata => (METADATA, 9),
        ApiKey::Produce => (PRODUCE, 9),
        ApiKey::Fetch => (FETCH, 12),
        ApiKey::ListOffsets => (LIST_OFFSETS, 6),
        ApiKey::CreateTopics => (CREATE_TOPICS, 5),
        ApiKey::DeleteTopics => (DELETE_TOPICS, 4),
        ApiKey::DescribeConfigs => (DESCRIBE_CONFIGS, 4),
        ApiKey::InitProducerId => (INIT_PRODUCER_ID, 2),
        ApiKey::FindCoordinator => (FIND_COORDINATOR, 3),
        ApiKey::DeleteRecords => (DELETE_RECORDS, 2),
        ApiKey::JoinGroup => (JOIN_GROUP, 6),
        ApiKey::SyncGroup => (SYNC_GROUP, 4),
        ApiKey::Heartbeat => (HEARTBEAT, 4),
        ApiKey::LeaveGroup => (LEAVE_GROUP, 4),
        ApiKey::OffsetCommit => (OFFSET_COMMIT, 8),
        ApiKey::OffsetFetch => (OFFSET_FETCH, 6),
        ApiKey::DescribeGroups => (DESCRIBE_GROUPS, 5),
        ApiKey::ListGroups => (LIST_GROUPS, 3),
        ApiKey::DeleteGroups => (DELETE_GROUPS, 2),
        _ => return None,
    })
}

/// Checks that `body` is one well-shaped request of `api` at `version`.
pub(crate) fn check(api: ApiKey, version: i16, body: &[u8]) -> Result<(), String> {
    let (fields, flexible_from) =
        schema(api).ok_or_else(|| format!("weir does not decode {api:?} requests"))?;
    let mut w = Walk {
        buf: body,
        version,
        flexible: version >= flexible_from,
    };
    w.walk_struct(fields)
        .map_err(|what| format!("malformed {api:?} v{version} request: {what}"))?;
    if !w.buf.is_empty() {
        // Kafka's own broker ignores bytes past a request's last field, and clients rely on
        // it: librdkafka 2.16 sends its all-topics Metadata v13 with three such bytes.
        tracing::debug!(%version, extra = w.buf.len(), "ignoring bytes after the end of a {api:?} request");
    }
    Ok(())
}

struct Walk<'a> {
    buf: &'a [u8],
    version: i16,
    flexible: bool,
}

impl Walk<'_> {
    fn skip(&mut self, n: usize) -> Result<(), &'static str> {
        if n > self.buf.len() {
            return Err("a field runs past the end of the frame");
        }
        self.buf = &self.buf[n..];
        Ok(())
    }

    fn int(&mut self, n: usize) -> Result<i64, &'static str> {
        let b = self.buf.get(..n).ok_or("the frame ends inside a field")?;
        let v = b.iter().fold(0i64, |acc, &x| (acc << 8) | i64::from(x));
        self.buf = &self.buf[n..];
        // sign-extend
        let shift = 64 - 8 * n as u32;
        Ok((v << shift) >> shift)
    }

    fn uvarint(&mut self) -> Result<u64, &'static str> {
        let mut v: u64 = 0;
        for shift in (0..35).step_by(7) {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or("the frame ends inside a varint")?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 5 bytes")
    }

    /// A length or count: `None` for null. Refuses one larger than the bytes left.
    fn count(&mut self, width: usize) -> Result<Option<usize>, &'static str> {
        let n = if self.flexible {
            match self.uvarint()? {
                0 => return Ok(None),
                n => n - 1,
            }
        } else {
            match self.int(width)? {
                -1 => return Ok(None),
                n if n < 0 => return Err("negative length"),
                n => n as u64,
            }
        };
        if n > self.buf.len() as u64 {
            return Err("a length claims more bytes than the frame holds");
        }
        Ok(Some(n as usize))
    }

    fn walk_struct(&mut self, fields: &[Field]) -> Result<(), &'static str> {
        for fl in fields {
            if (fl.min..=fl.max).contains(&self.version) {
                self.walk(fl.ty)?;
            }
        }
        if self.flexible {
            let tags = self.uvarint()?;
            if tags > self.buf.len() as u64 {
                return Err("tagged field count exceeds the frame");
            }
            for _ in 0..tags {
                self.uvarint()?;
                let size = self.uvarint()?;
                self.skip(usize::try_from(size).map_err(|_| "tagged field too long")?)?;
            }
        }
        Ok(())
    }

    fn walk(&mut self, ty: Ty) -> Result<(), &'static str> {
        match ty {
            Ty::Fixed(n) => self.skip(n),
            Ty::Str => {
                let n = self.count(2)?.unwrap_or(0);
                self.skip(n)
            }
            Ty::Bytes => {
                let n = self.count(4)?.unwrap_or(0);
                self.skip(n)
            }
            Ty::Array(fields) => {
                for _ in 0..self.count(4)?.unwrap_or(0) {
                    self.walk_struct(fields)?;
                }
                Ok(())
            }
            Ty::FixedArray(size) => {
                let n = self.count(4)?.unwrap_or(0);
                self.skip(n.checked_mul(size).ok_or("array too long")?)
            }
            Ty::StrArray => {
                for _ in 0..self.count(4)?.unwrap_or(0) {
                    self.walk(Ty::Str)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{
        MetadataRequest, ProduceRequest, TopicName,
        metadata_request::MetadataRequestTopic,
        produce_request::{PartitionProduceData, TopicProduceData},
    };
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encode<T: Encodable>(m: &T, v: i16) -> Vec<u8> {
        let mut b = BytesMut::new();
        m.encode(&mut b, v).unwrap();
        b.to_vec()
    }

    #[test]
    fn accepts_what_kafka_protocol_encodes() {
        let md = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("clicks")))),
        ]));
        for v in 0..=13 {
            check(ApiKey::Metadata, v, &encode(&md, v)).unwrap();
        }
        let pr = ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![TopicProduceData::default().with_partition_data(vec![
                PartitionProduceData::default().with_records(Some(vec![1u8; 70].into())),
            ])]);
        for v in 3..=13 {
            check(ApiKey::Produce, v, &encode(&pr, v)).unwrap();
        }
    }

    fn check_all<T: Encodable + kafka_protocol::protocol::Request>(m: &T, lo: i16, hi: i16) {
        let api = ApiKey::try_from(T::KEY).unwrap();
        for v in lo..=hi {
            let b = encode(m, v);
            check(api, v, &b).unwrap_or_else(|e| panic!("{api:?} v{v}: {e}"));
            // Every strict prefix is refused (a field or the tag section is cut off).
            for cut in 0..b.len() {
                assert!(
                    check(api, v, &b[..cut]).is_err(),
                    "{api:?} v{v} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn accepts_full_requests_at_every_served_version() {
        use kafka_protocol::messages::create_topics_request::{
            CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
        };
        use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
        use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
        use kafka_protocol::messages::list_offsets_request::{
            ListOffsetsPartition, ListOffsetsTopic,
        };
        use kafka_protocol::messages::*;
        let s = |x: &'static str| StrBytes::from_static_str(x);
        let fetch = FetchRequest::default()
            .with_max_bytes(100)
            .with_topics(vec![FetchTopic::default().with_partitions(vec![
                FetchPartition::default(),
                FetchPartition::default().with_partition(1),
            ])])
            .with_forgotten_topics_data(vec![
                ForgottenTopic::default().with_partitions(vec![1, 2]),
            ]);
        check_all(&fetch, 7, 18);
        check_all(&fetch.clone().with_forgotten_topics_data(vec![]), 4, 6);
        let lo = ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![ListOffsetsPartition::default(); 2]),
        ]);
        check_all(&lo, 1, 10);
        let ct = CreateTopicsRequest::default().with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(s("t")))
                .with_assignments(vec![
                    CreatableReplicaAssignment::default().with_broker_ids(vec![BrokerId(0)]),
                ])
                .with_configs(vec![
                    CreatableTopicConfig::default()
                        .with_name(s("a"))
                        .with_value(None),
                    CreatableTopicConfig::default()
                        .with_name(s("b"))
                        .with_value(Some(s("1"))),
                ]),
        ]);
        check_all(&ct, 2, 7);
        let dt6 = DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default().with_name(None),
            DeleteTopicState::default().with_name(Some(TopicName(s("x")))),
        ]);
        check_all(&dt6, 6, 6);
        let dt = DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("x")); 2]);
        check_all(&dt, 1, 5);
        let dc = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default().with_configuration_keys(None),
            DescribeConfigsResource::default().with_configuration_keys(Some(vec![s("k")])),
        ]);
        check_all(&dc, 1, 4);
        let ip = InitProducerIdRequest::default().with_transactional_id(None);
        check_all(&ip, 0, 5);
        let av = ApiVersionsRequest::default()
            .with_client_software_name(s("weir"))
            .with_client_software_version(s("1"));
        check_all(&av, 0, 4);
        let md = MetadataRequest::default().with_topics(None);
        check_all(&md, 1, 13);
        let dr = DeleteRecordsRequest::default().with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default(
                    );
                    2
                ]),
        ]);
        check_all(&dr, 0, 2);
        let fc = FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")]);
        check_all(&fc, 4, 6);
        check_all(&FindCoordinatorRequest::default().with_key(s("g")), 0, 3);
    }

    #[test]
    fn refuses_huge_counts_and_ignores_trailing_bytes() {
        // Metadata v0: a topic array claiming 54 million elements in a 5-byte body.
        let e = check(ApiKey::Metadata, 0, &[3, 0x3c, 0x0c, 0, 0xb6]).unwrap_err();
        assert!(e.contains("claims more bytes"), "{e}");
        // Bytes after the last field are ignored, as Kafka does.
        check(ApiKey::Metadata, 1, &[0, 0, 0, 0, 7]).unwrap();
        assert!(check(ApiKey::Metadata, 9, &[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
