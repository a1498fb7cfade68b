//! The worked examples of docs/FORMAT.md, byte for byte.

use serde::{Deserialize, Serialize};
use weir_serde_fmt::{Descending, key};

const FORMAT_MD: &str = include_str!("../../docs/FORMAT.md");

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Order<'a> {
    id: u32,
    name: &'a str,
    price: i16,
    gift: Option<bool>,
    tags: Vec<u8>,
    state: State,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum State {
    Open,
    Shipped { day: u16 },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct OrderKey {
    region: String,
    id: i32,
    name: Descending<String>,
    shipped: Option<u16>,
    tags: Vec<u8>,
    total: f64,
}

#[test]
fn record_example() {
    let order = Order {
        id: 300,
        name: "ab",
        price: -2,
        gift: Some(true),
        tags: vec![1, 2],
        state: State::Shipped { day: 7 },
    };
    let bytes = weir_serde_fmt::to_vec(&order).unwrap();
    let expected = "2c 01 00 00 02 61 62 fe ff 01 01 02 01 02 01 07 00";
    assert_eq!(hex(&bytes), expected);
    assert!(
        FORMAT_MD.contains(expected),
        "docs/FORMAT.md no longer shows {expected}"
    );
    assert_eq!(
        weir_serde_fmt::from_slice::<Order<'_>>(&bytes).unwrap(),
        order
    );
    assert_eq!(weir_serde_fmt::to_vec(&State::Open).unwrap(), [0]);
}

#[test]
fn key_example() {
    let order_key = OrderKey {
        region: "e\0".into(),
        id: -2,
        name: Descending("ab".into()),
        shipped: Some(7),
        tags: vec![1],
        total: -1.5,
    };
    let bytes = key::to_vec(&order_key).unwrap();
    let expected =
        "65 00 ff 00 00 7f ff ff fe 9e 9d ff ff 01 00 07 01 01 00 40 07 ff ff ff ff ff ff";
    assert_eq!(hex(&bytes), expected);
    assert!(
        FORMAT_MD.contains(expected),
        "docs/FORMAT.md no longer shows {expected}"
    );
    assert_eq!(key::from_slice::<OrderKey>(&bytes).unwrap(), order_key);
}
