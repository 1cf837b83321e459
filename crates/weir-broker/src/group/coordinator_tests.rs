//! The coordinator's state machine driven by hand, clock included.

use super::*;

fn join(member: &str) -> Join {
    Join {
        group: "g".into(),
        member_id: member.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: vec![
            ("range".into(), Bytes::from_static(b"md")),
            ("roundrobin".into(), Bytes::new()),
        ],
        require_known_member_id: true,
    }
}

fn now_answer<T: std::fmt::Debug>(a: Answer<T>) -> T {
    match a {
        Answer::Now(t) => t,
        Answer::Wait(mut rx) => rx.try_recv().expect("answered"),
    }
}

/// a alone and stable in generation 1; then b joins and waits for a to rejoin.
fn stable_a_then_b_joins(t0: Instant) -> (Coordinator, String, String, oneshot::Receiver<Joined>) {
    let mut c = Coordinator::new(GroupSettings::default());
    let a = first_join(&mut c, t0);
    now_answer(c.join(join(&a), t0));
    now_answer(c.sync("g", &a, 1, vec![], t0));
    let b = first_join(&mut c, t0);
    let Answer::Wait(jb) = c.join(join(&b), t0) else {
        panic!("b waits for a to rejoin")
    };
    (c, a, b, jb)
}

fn first_join(c: &mut Coordinator, now: Instant) -> String {
    let j = now_answer(c.join(join(""), now));
    assert_eq!(j.error, code::MEMBER_ID_REQUIRED);
    j.member_id
}

#[test]
fn two_members_join_sync_and_rebalance_on_leave() {
    let mut c = Coordinator::new(GroupSettings::default());
    let t0 = Instant::now();
    let a = first_join(&mut c, t0);
    let ja = now_answer(c.join(join(&a), t0));
    assert_eq!(
        (ja.error, ja.generation, ja.leader.as_str()),
        (code::NONE, 1, a.as_str())
    );
    assert_eq!(ja.protocol_name.as_deref(), Some("range"));
    let sa = now_answer(c.sync(
        "g",
        &a,
        1,
        vec![(a.clone(), Bytes::from_static(b"all"))],
        t0,
    ));
    assert_eq!(sa, (code::NONE, Bytes::from_static(b"all")));
    assert_eq!(c.describe("g").unwrap().state, GroupState::Stable);

    // b joins: a learns of the rebalance from its heartbeat and rejoins.
    let b = first_join(&mut c, t0);
    let Answer::Wait(mut jb) = c.join(join(&b), t0) else {
        panic!("b must wait for a")
    };
    assert_eq!(c.heartbeat("g", &a, 1, t0), code::REBALANCE_IN_PROGRESS);
    let ja2 = now_answer(c.join(join(&a), t0));
    let jb = jb.try_recv().unwrap();
    assert_eq!((ja2.generation, jb.generation), (2, 2));
    assert_eq!(ja2.members.len(), 2, "the leader sees every member");
    assert!(jb.members.is_empty(), "a follower sees none");
    let Answer::Wait(mut sb) = c.sync("g", &b, 2, vec![], t0) else {
        panic!("b waits for the leader")
    };
    let assign = vec![
        (a.clone(), Bytes::from_static(b"A")),
        (b.clone(), Bytes::from_static(b"B")),
    ];
    assert_eq!(
        now_answer(c.sync("g", &a, 2, assign, t0)).1,
        Bytes::from_static(b"A")
    );
    assert_eq!(
        sb.try_recv().unwrap(),
        (code::NONE, Bytes::from_static(b"B"))
    );
    assert_eq!(c.heartbeat("g", &b, 1, t0), code::ILLEGAL_GENERATION);
    assert_eq!(c.check_commit("g", &b, 2), code::NONE);
    assert_eq!(
        c.check_commit("g", "", -1),
        code::UNKNOWN_MEMBER_ID,
        "simple commits only to empty groups"
    );

    // a leaves: b is alone in generation 3 after rejoining.
    assert_eq!(c.leave("g", &a, t0), code::NONE);
    assert_eq!(c.heartbeat("g", &b, 2, t0), code::REBALANCE_IN_PROGRESS);
    let jb3 = now_answer(c.join(join(&b), t0));
    assert_eq!((jb3.generation, jb3.leader.as_str()), (3, b.as_str()));
    assert_eq!(c.delete("g"), code::NON_EMPTY_GROUP);
}

#[test]
fn silent_members_expire_and_unjoined_ones_miss_the_generation() {
    let t0 = Instant::now();
    let (mut c, a, b, mut jb) = stable_a_then_b_joins(t0);
    // a never rejoins: after the rebalance timeout b gets a generation of its own.
    c.tick(t0 + Duration::from_secs(31));
    let jb = jb.try_recv().unwrap();
    assert_eq!(
        (jb.generation, jb.leader.as_str(), jb.members.len()),
        (2, b.as_str(), 1)
    );
    assert_eq!(c.heartbeat("g", &a, 1, t0), code::UNKNOWN_MEMBER_ID);
    now_answer(c.sync("g", &b, 2, vec![], t0 + Duration::from_secs(31)));
    // b goes silent past its session timeout: the group empties.
    c.tick(t0 + Duration::from_secs(45));
    assert_eq!(c.describe("g").unwrap().state, GroupState::Empty);
    assert_eq!(c.check_commit("g", "", -1), code::NONE);
    assert_eq!(c.delete("g"), code::NONE);
}

#[test]
fn bad_joins_get_their_errors() {
    let mut c = Coordinator::new(GroupSettings::default());
    let t0 = Instant::now();
    let mut j = join("");
    j.session_timeout = Duration::from_millis(10);
    assert_eq!(
        now_answer(c.join(j, t0)).error,
        code::INVALID_SESSION_TIMEOUT
    );
    assert_eq!(
        now_answer(c.join(join("nobody"), t0)).error,
        code::UNKNOWN_MEMBER_ID
    );
    let a = first_join(&mut c, t0);
    now_answer(c.join(join(&a), t0));
    let b = first_join(&mut c, t0);
    let mut other = join(&b);
    other.protocols = vec![("sticky-only".into(), Bytes::new())];
    assert_eq!(
        now_answer(c.join(other, t0)).error,
        code::INCONSISTENT_GROUP_PROTOCOL
    );
}

#[test]
fn a_dead_member_does_not_hold_a_rebalance_past_its_session_timeout() {
    let t0 = Instant::now();
    let (mut c, _a, b, mut jb) = stable_a_then_b_joins(t0);
    // a is dead: its 10 s session runs out long before its 30 s rebalance timeout.
    c.tick(t0 + Duration::from_secs(5));
    assert!(jb.try_recv().is_err(), "still waiting within a's session");
    c.tick(t0 + Duration::from_secs(11));
    let jb = jb.try_recv().expect("b's join answered once a expired");
    assert_eq!(
        (jb.error, jb.generation, jb.leader.as_str()),
        (code::NONE, 2, b.as_str())
    );
    // A follower waiting for the leader's assignment is alive, too.
    assert_eq!(
        c.heartbeat("g", &b, 2, t0 + Duration::from_secs(11)),
        code::NONE
    );
}

#[test]
fn a_restarted_static_member_replaces_its_old_self() {
    let mut c = Coordinator::new(GroupSettings::default());
    let t0 = Instant::now();
    let mut j = join("");
    j.instance_id = Some("host-1".into());
    let first = now_answer(c.join(j.clone(), t0));
    assert_eq!(
        first.error,
        code::NONE,
        "static members skip MEMBER_ID_REQUIRED"
    );
    now_answer(c.sync("g", &first.member_id, 1, vec![], t0));
    let second = now_answer(c.join(j.clone(), t0));
    assert_eq!((second.error, second.generation), (code::NONE, 2));
    assert_ne!(second.member_id, first.member_id);
    assert_eq!(c.describe("g").unwrap().members.len(), 1);
    assert_eq!(
        c.heartbeat("g", &first.member_id, 2, t0),
        code::UNKNOWN_MEMBER_ID
    );
    // The old member id joining again under the same instance id is fenced.
    j.member_id = first.member_id;
    assert_eq!(now_answer(c.join(j, t0)).error, code::FENCED_INSTANCE_ID);
    assert_eq!(c.member_of_instance("g", "host-1"), Some(second.member_id));
}

#[test]
fn the_initial_delay_gathers_members_each_time_the_group_starts_empty() {
    let settings = GroupSettings {
        initial_rebalance_delay: Duration::from_secs(3),
        ..GroupSettings::default()
    };
    let mut c = Coordinator::new(settings);
    let t0 = Instant::now();
    for round in 0..2 {
        let a = first_join(&mut c, t0);
        let Answer::Wait(mut ja) = c.join(join(&a), t0) else {
            panic!("round {round}: a waits out the initial delay")
        };
        let b = first_join(&mut c, t0);
        let Answer::Wait(mut jb) = c.join(join(&b), t0 + Duration::from_secs(1)) else {
            panic!("round {round}: b waits too")
        };
        c.tick(t0 + Duration::from_secs(2));
        assert!(
            ja.try_recv().is_err(),
            "round {round}: answered before the delay"
        );
        c.tick(t0 + Duration::from_secs(3));
        let (ja, jb) = (ja.try_recv().unwrap(), jb.try_recv().unwrap());
        assert_eq!(ja.generation, jb.generation, "one generation holds both");
        assert_eq!(
            ja.members.len() + jb.members.len(),
            2,
            "the leader sees both"
        );
        assert_eq!(c.leave("g", &a, t0), code::NONE);
        assert_eq!(c.leave("g", &b, t0), code::NONE);
        assert_eq!(c.describe("g").unwrap().state, GroupState::Empty);
    }
}

#[test]
fn commits_follow_kafkas_rules() {
    let mut c = Coordinator::new(GroupSettings::default());
    let t0 = Instant::now();
    assert_eq!(
        c.check_commit("nobody", "", -1),
        code::NONE,
        "simple consumer"
    );
    assert_eq!(c.check_commit("nobody", "m", 3), code::ILLEGAL_GENERATION);
    let a = first_join(&mut c, t0);
    now_answer(c.join(join(&a), t0));
    assert_eq!(
        c.check_commit("g", &a, 1),
        code::REBALANCE_IN_PROGRESS,
        "awaiting sync"
    );
    now_answer(c.sync("g", &a, 1, vec![], t0));
    assert_eq!(c.check_commit("g", &a, 1), code::NONE);
    assert_eq!(c.check_commit("g", &a, 0), code::ILLEGAL_GENERATION);
    assert_eq!(c.check_commit("g", "stranger", 1), code::UNKNOWN_MEMBER_ID);
    // A rebalance starts: a may still commit what it processed before it rejoins.
    let b = first_join(&mut c, t0);
    let _wait = c.join(join(&b), t0);
    assert_eq!(c.check_commit("g", &a, 1), code::NONE);
}

#[test]
fn a_stable_group_survives_a_restart_through_its_snapshot() {
    let mut c = Coordinator::new(GroupSettings::default());
    let t0 = Instant::now();
    let a = first_join(&mut c, t0);
    now_answer(c.join(join(&a), t0));
    assert!(c.take_changes().is_empty(), "nothing stored mid-rebalance");
    now_answer(c.sync("g", &a, 1, vec![(a.clone(), Bytes::from_static(b"A"))], t0));
    let changes = c.take_changes();
    assert_eq!(changes.len(), 1);
    assert!(c.take_changes().is_empty(), "each change once");
    let (id, Some(snap)) = changes.into_iter().next().unwrap() else {
        panic!("a snapshot")
    };

    let mut restarted = Coordinator::new(GroupSettings::default());
    let t1 = t0 + Duration::from_secs(60);
    restarted.restore(id, GroupSnapshot::decode(&snap.encode()).unwrap(), t1);
    assert_eq!(restarted.heartbeat("g", &a, 1, t1), code::NONE);
    assert_eq!(restarted.check_commit("g", &a, 1), code::NONE);
    let d = restarted.describe("g").unwrap();
    assert_eq!(
        (d.state, d.members[0].assignment.as_ref()),
        (GroupState::Stable, &b"A"[..])
    );
    // The member is gone for good: it expires, and the emptied group is forgotten.
    restarted.tick(t1 + Duration::from_secs(11));
    assert_eq!(restarted.describe("g").unwrap().state, GroupState::Empty);
    assert_eq!(restarted.take_changes(), vec![("g".to_string(), None)]);
}
