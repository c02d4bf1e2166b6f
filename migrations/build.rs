// `sqlx::migrate!` embeds the SQL at compile time; rebuild when a migration is added.
fn main() {
    println!("cargo:rerun-if-changed=sql");
}
