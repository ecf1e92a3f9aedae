//! The encoding of lattice values must be exactly the bytes of the guest ABI
//! (docs/lattice-encoding.md in the essa repository), and the merges must
//! match the store's.

use super::causal::{MultiKeyCausalPayload, VectorClock, VectorClockValuePair};
use super::last_writer_wins::Timestamp;
use super::*;
use crate::ClientKey;
use std::collections::{BTreeSet, HashMap, HashSet};

fn hex(text: &str) -> Vec<u8> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn set(items: &[&str]) -> SetLattice<Vec<u8>> {
    SetLattice::new(items.iter().map(|s| s.as_bytes().to_vec()).collect())
}

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

#[test]
fn worked_example_set() {
    let value = LatticeValue::from(set(&["a"]));
    let bytes = bincode::serialize(&value).unwrap();
    assert_eq!(bytes, hex("01000000 0100000000000000 0100000000000000 61"));
    assert_eq!(bytes.len(), 21);
    assert_eq!(bincode::deserialize::<LatticeValue>(&bytes).unwrap(), value);
}

#[test]
fn worked_example_lww() {
    let stamp = ts("2026-11-24T04:28:17.057686123Z");
    let value = LatticeValue::from(LastWriterWinsLattice::from_pair(stamp, b"hi".to_vec()));
    let bytes = bincode::serialize(&value).unwrap();
    assert_eq!(
        bytes,
        hex("00000000 1e00000000000000
             323032362d31312d32345430343a32383a31372e3035373638363132335a
             0200000000000000 6869")
    );
    assert_eq!(bytes.len(), 52);
    assert_eq!(bincode::deserialize::<LatticeValue>(&bytes).unwrap(), value);
}

#[test]
fn variant_tags() {
    let tag = |value: LatticeValue| bincode::serialize(&value).unwrap()[..4].to_vec();
    let clock = VectorClock::default();
    assert_eq!(tag(LastWriterWinsLattice::from_pair(ts("2020-01-01T00:00:00Z"), vec![]).into()), [0, 0, 0, 0]);
    assert_eq!(tag(set(&[]).into()), [1, 0, 0, 0]);
    assert_eq!(tag(OrderedSetLattice::<Vec<u8>>::default().into()), [2, 0, 0, 0]);
    assert_eq!(
        tag(SingleKeyCausalLattice::new(VectorClockValuePair::new(clock.clone(), set(&[]))).into()),
        [3, 0, 0, 0]
    );
    assert_eq!(
        tag(MultiKeyCausalLattice::new(MultiKeyCausalPayload::new(clock, MapLattice::default(), set(&[]))).into()),
        [4, 0, 0, 0]
    );
}

#[test]
fn ordered_set_is_in_byte_order() {
    let items: BTreeSet<Vec<u8>> = [b"b".to_vec(), b"ab".to_vec(), b"a".to_vec()].into();
    let bytes = bincode::serialize(&LatticeValue::from(OrderedSetLattice::new(items))).unwrap();
    assert_eq!(
        bytes,
        hex("02000000 0300000000000000
             0100000000000000 61  0200000000000000 6162  0100000000000000 62")
    );
}

#[test]
fn causal_layouts() {
    let mut clock = VectorClock::default();
    clock.reveal_mut().insert("n".to_string(), MaxLattice::new(7));
    let single = LatticeValue::from(SingleKeyCausalLattice::new(VectorClockValuePair::new(
        clock.clone(),
        set(&["x"]),
    )));
    assert_eq!(
        bincode::serialize(&single).unwrap(),
        hex("03000000 0100000000000000 0100000000000000 6e 0700000000000000
             0100000000000000 0100000000000000 78")
    );

    let mut deps = MapLattice::<ClientKey, VectorClock>::default();
    deps.reveal_mut().insert(ClientKey::from("k"), clock.clone());
    let multi = LatticeValue::from(MultiKeyCausalLattice::new(MultiKeyCausalPayload::new(
        clock,
        deps,
        set(&[]),
    )));
    let bytes = bincode::serialize(&multi).unwrap();
    assert_eq!(
        bytes,
        hex("04000000 0100000000000000 0100000000000000 6e 0700000000000000
             0100000000000000 0100000000000000 6b 0100000000000000 0100000000000000 6e 0700000000000000
             0000000000000000")
    );
    assert_eq!(bincode::deserialize::<LatticeValue>(&bytes).unwrap(), multi);
}

#[test]
fn timestamp_fraction_follows_chrono() {
    let cases = [
        (0, 0, "1970-01-01T00:00:00Z"),
        (1, 500_000_000, "1970-01-01T00:00:01.500Z"),
        (1, 123_456_000, "1970-01-01T00:00:01.123456Z"),
        (1, 1, "1970-01-01T00:00:01.000000001Z"),
        (951_782_400, 0, "2000-02-29T00:00:00Z"),
        (-1, 999_000_000, "1969-12-31T23:59:59.999Z"),
        (-62_167_219_200, 0, "0000-01-01T00:00:00Z"),
        (253_402_300_799, 999_999_999, "9999-12-31T23:59:59.999999999Z"),
        (253_402_300_800, 0, "+10000-01-01T00:00:00Z"),
    ];
    for (secs, nanos, text) in cases {
        let stamp = Timestamp::from_unix(secs, nanos);
        assert_eq!(stamp.to_string(), text);
        if !text.starts_with('+') {
            assert_eq!(ts(text), stamp, "{}", text);
        }
    }
}

#[test]
fn timestamp_parsing_accepts_rfc3339() {
    let utc = ts("2021-06-01T12:00:00Z");
    assert_eq!(ts("2021-06-01t12:00:00z"), utc);
    assert_eq!(ts("2021-06-01 12:00:00Z"), utc);
    assert_eq!(ts("2021-06-01T14:30:00+02:30"), utc);
    assert_eq!(ts("2021-06-01T11:00:00-01:00"), utc);
    assert_eq!(ts("2021-06-01T12:00:00.5Z"), Timestamp::from_unix(utc.unix_seconds(), 500_000_000));
    assert_eq!(
        ts("2021-06-01T12:00:00.1234567891234Z"),
        Timestamp::from_unix(utc.unix_seconds(), 123_456_789)
    );
    assert_eq!(ts("2016-12-31T23:59:60Z"), ts("2017-01-01T00:00:00Z"));
    for bad in [
        "",
        "2021-06-01",
        "2021-06-01T12:00:00",
        "2021-06-01T12:00:00.Z",
        "2021-13-01T12:00:00Z",
        "2021-02-29T12:00:00Z",
        "2021-06-01T24:00:00Z",
        "2021-06-01T12:00:00+24:00",
        "2021-06-01T12:00:00Zjunk",
        "21-06-01T12:00:00Z",
    ] {
        assert!(bad.parse::<Timestamp>().is_err(), "{:?} parsed", bad);
    }
    assert!(bincode::deserialize::<Timestamp>(&bincode::serialize("yesterday").unwrap()).is_err());
}

#[test]
fn timestamp_now_is_recent() {
    let now = Timestamp::now();
    assert!(now > ts("2020-01-01T00:00:00Z"));
    let text = now.to_string();
    assert_eq!(ts(&text), now);
}

#[test]
fn lww_merge_keeps_the_later_and_breaks_ties_on_the_value() {
    let early = LastWriterWinsLattice::from_pair(ts("2020-01-01T00:00:00Z"), b"zzz".to_vec());
    let late = LastWriterWinsLattice::from_pair(ts("2020-01-01T00:00:00.001Z"), b"aaa".to_vec());
    let mut a = early.clone();
    a.merge(&late);
    let mut b = late.clone();
    b.merge(&early);
    assert_eq!(a, late);
    assert_eq!(b, late);

    let x = LastWriterWinsLattice::from_pair(ts("2020-01-01T00:00:00Z"), b"x".to_vec());
    let y = LastWriterWinsLattice::from_pair(ts("2020-01-01T00:00:00Z"), b"y".to_vec());
    let (mut xy, mut yx) = (x.clone(), y.clone());
    xy.merge(&y);
    yx.merge(&x);
    assert_eq!(xy, y);
    assert_eq!(yx, y);
}

#[test]
fn set_merge_is_union() {
    let mut a = set(&["one", "two"]);
    a.merge(&set(&["two", "three"]));
    assert_eq!(a, set(&["one", "two", "three"]));
}

#[test]
fn causal_merge_replaces_dominated_and_unions_concurrent() {
    let clock = |entries: &[(&str, usize)]| {
        let map: HashMap<String, MaxLattice<usize>> =
            entries.iter().map(|(k, v)| (k.to_string(), MaxLattice::new(*v))).collect();
        VectorClock::new(map)
    };
    let value = |c: VectorClock, items: &[&str]| {
        SingleKeyCausalLattice::new(VectorClockValuePair::new(c, set(items)))
    };

    let mut older = value(clock(&[("a", 1)]), &["old"]);
    older.merge(&value(clock(&[("a", 2)]), &["new"]));
    assert_eq!(older, value(clock(&[("a", 2)]), &["new"]));

    let mut newer = value(clock(&[("a", 2)]), &["new"]);
    newer.merge(&value(clock(&[("a", 1)]), &["old"]));
    assert_eq!(newer, value(clock(&[("a", 2)]), &["new"]));

    let mut left = value(clock(&[("a", 1)]), &["left"]);
    left.merge(&value(clock(&[("b", 1)]), &["right"]));
    assert_eq!(left, value(clock(&[("a", 1), ("b", 1)]), &["left", "right"]));
}

#[test]
fn lattice_value_accessors_and_merge() {
    let mut value = LatticeValue::from(set(&["a"]));
    assert!(value.as_set().is_ok());
    let error = value.as_lww().unwrap_err();
    assert_eq!(error.to_string(), "expected a Lww lattice value, found a Set one");
    value.try_merge(&set(&["b"]).into()).unwrap();
    let lww = LatticeValue::from(LastWriterWinsLattice::new_now(vec![1u8]));
    assert!(value.try_merge(&lww).is_err());
    let items: HashSet<Vec<u8>> = value.into_set().unwrap().into_revealed();
    assert_eq!(items.len(), 2);
}

#[test]
fn client_key_is_a_string() {
    let key = ClientKey::from("some-key");
    let bytes = bincode::serialize(&key).unwrap();
    assert_eq!(bytes, bincode::serialize("some-key").unwrap());
    assert_eq!(bincode::deserialize::<ClientKey>(&bytes).unwrap(), key);
    assert_eq!(key.len(), 8);
    assert_eq!(key.to_string(), "some-key");
}
