fn main() {
    eprintln!("rootlessctl: not implemented yet");
    std::process::exit(1);
}
