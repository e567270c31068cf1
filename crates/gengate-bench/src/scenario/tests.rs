//! Parsing of the scenario settings, and the mix's weighted pick.

use super::headers::{bearer_in, parse_header};
use super::target::Target;
use super::user::{Action, Mix};

#[test]
fn mixes_parse_and_pick_by_weight() {
    let m: Mix = "create=1,gallery=3".parse().unwrap();
    assert_eq!((m.create, m.get, m.list, m.gallery), (1, 0, 0, 3));
    let picks: Vec<_> = (0..4).map(|r| m.pick(r)).collect();
    assert_eq!(
        picks,
        [
            Action::Create,
            Action::Gallery,
            Action::Gallery,
            Action::Gallery
        ]
    );
    assert!("create=x".parse::<Mix>().is_err());
    assert!("browse=1".parse::<Mix>().is_err());
    assert!("create=0".parse::<Mix>().is_err());
}

#[test]
fn targets_and_headers_parse() {
    let t = Target::parse("http://127.0.0.1:8080/v1/gallery?limit=5").unwrap();
    assert_eq!(t.addr.port(), 8080);
    assert_eq!(t.authority, "127.0.0.1:8080");
    assert_eq!(t.path_and_query, "/v1/gallery?limit=5");
    assert_eq!(
        Target::parse("http://127.0.0.1:9").unwrap().path_and_query,
        "/"
    );
    assert!(Target::parse("https://127.0.0.1/").is_err());
    let h = parse_header("Authorization: Bearer gg_abc").unwrap();
    assert_eq!(bearer_in(&[h]).as_deref(), Some("gg_abc"));
    assert!(parse_header("no colon").is_err());
}
