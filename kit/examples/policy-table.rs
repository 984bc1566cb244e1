//! Prints the authorization policy table (Markdown), as `SECURITY.md` carries it:
//! `cargo run -p qkdn-kit --example policy-table`.

fn main() {
    print!("{}", qkdn_kit::policy::markdown());
}
