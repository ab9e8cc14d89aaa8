fn main() {
    println!("mpijob-controller: not yet implemented");
}
