fn main() {
    println!("mpijob-agent: not yet implemented");
}
