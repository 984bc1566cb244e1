//! `SECURITY.md` states the policy the services enforce: its table is exactly the one
//! `qkdn_kit::policy::markdown` prints from the table in the code.

#[test]
fn security_md_carries_the_enforced_policy_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../SECURITY.md");
    let text = std::fs::read_to_string(path).unwrap();
    let (start, end) = ("<!-- policy table: begin -->\n", "<!-- policy table: end -->");
    let from = text.find(start).expect("the table's begin marker") + start.len();
    let to = text.find(end).expect("the table's end marker");
    let written = &text[from..to];
    let enforced = qkdn_kit::policy::markdown();
    assert_eq!(
        written, enforced,
        "SECURITY.md's policy table differs from the code's; the code's is:\n{enforced}"
    );
}
