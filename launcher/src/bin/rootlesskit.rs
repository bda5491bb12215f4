fn main() {
    eprintln!("rootlesskit: not implemented yet");
    std::process::exit(1);
}
