#[path = "files/conditional.rs"]
mod conditional;
#[path = "files/listing.rs"]
mod listing;
#[path = "files/resolve.rs"]
mod resolve;
fn main() {}
