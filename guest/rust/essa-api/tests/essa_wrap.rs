//! `#[essa_wrap]` keeps the function and generates the wrapper and the
//! remote-call function with the signatures essa-rs users rely on. (Running
//! them needs the essa host; examples/test-function-rust does that.)

use essa_api::{essa_wrap, ClientKey, EssaResult, RemoteFunctionResult};

#[essa_wrap(name = "repeat_extern")]
pub fn repeat(text: String, mut count: usize) -> String {
    let mut out = String::new();
    while count > 0 {
        out += &text;
        count -= 1;
    }
    out
}

#[essa_wrap(name = "nothing_extern")]
fn nothing() {}

#[essa_wrap(name = "check_extern")]
pub fn check(key: ClientKey, range: (usize, usize)) -> Result<(), String> {
    if range.0 <= range.1 {
        Ok(())
    } else {
        Err(format!("bad range for {}", key))
    }
}

#[test]
fn the_function_is_kept() {
    assert_eq!(repeat("ab".into(), 3), "ababab");
    nothing();
    assert!(check("k".into(), (2, 1)).is_err());
}

#[test]
fn remote_call_functions_have_the_essa_rs_signatures() {
    let _: fn(String, usize) -> Result<RemoteFunctionResult<String>, EssaResult> = repeat_extern;
    let _: fn() -> Result<RemoteFunctionResult<()>, EssaResult> = nothing_extern;
    let _: fn(ClientKey, (usize, usize)) -> Result<RemoteFunctionResult<Result<(), String>>, EssaResult> =
        check_extern;
    let _: extern "C" fn(usize) = __essa_wrapper__repeat;
    let _: extern "C" fn(usize) = __essa_wrapper__nothing;
}

#[test]
fn arguments_are_encoded_field_by_field() {
    // what the remote-call function sends: the parameters in order, bincode
    let args = __essaArgs__repeat {
        text: "hi".into(),
        count: 3,
    };
    let bytes = essa_api::bincode::serialize(&args).unwrap();
    assert_eq!(bytes, [&2u64.to_le_bytes()[..], b"hi", &3u64.to_le_bytes()].concat());
}

#[test]
fn result_codes_match_the_abi() {
    let codes = [
        (EssaResult::Ok, 0),
        (EssaResult::UnknownError, -1),
        (EssaResult::NoSuchFunction, -2),
        (EssaResult::BufferTooSmall, -3),
        (EssaResult::NotFound, -4),
        (EssaResult::InvalidFunctionSignature, -5),
        (EssaResult::NoResult, -6),
        (EssaResult::InvalidResult, -8),
    ];
    for (result, code) in codes {
        assert_eq!(i32::from(result), code);
        assert_eq!(EssaResult::try_from(code).unwrap(), result);
    }
    assert!(EssaResult::try_from(-7).is_err());
}

#[essa_wrap(name = "typed_extern")]
pub fn typed(
    words: Vec<String>,
    data: Vec<u8>,
    limit: Option<u32>,
    pair: (i8, f64),
    grid: [u16; 2],
    counts: std::collections::BTreeMap<String, usize>,
) -> Box<Vec<bool>> {
    let _ = (words, data, limit, pair, grid, counts);
    Box::new(Vec::new())
}

#[test]
fn signatures_are_recorded_as_json_lines() {
    // the line in the custom section "essa.signatures" (docs/signatures.md)
    assert_eq!(
        std::str::from_utf8(&__essa_signature__repeat).unwrap(),
        "{\"name\":\"repeat\",\"params\":[{\"name\":\"text\",\"type\":\"string\"},\
         {\"name\":\"count\",\"type\":\"u64\"}],\"result\":\"string\"}\n"
    );
    assert_eq!(
        std::str::from_utf8(&__essa_signature__nothing).unwrap(),
        "{\"name\":\"nothing\",\"params\":[],\"result\":\"unit\"}\n"
    );
    assert_eq!(
        std::str::from_utf8(&__essa_signature__typed).unwrap(),
        "{\"name\":\"typed\",\"params\":[{\"name\":\"words\",\"type\":\"list<string>\"},\
         {\"name\":\"data\",\"type\":\"bytes\"},{\"name\":\"limit\",\"type\":\"option<u32>\"},\
         {\"name\":\"pair\",\"type\":\"tuple<i8,f64>\"},{\"name\":\"grid\",\"type\":\"tuple<u16,u16>\"},\
         {\"name\":\"counts\",\"type\":\"map<string,u64>\"}],\"result\":\"list<bool>\"}\n"
    );
    // `check` takes a ClientKey (a type of the SDK's own): no line, it keeps the raw-bytes interface
}
