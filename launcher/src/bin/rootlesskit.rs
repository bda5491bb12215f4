fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match launcher::cli::front(&args) {
        Err(code) => std::process::exit(code),
        Ok(_opts) => {
            // TODO(lead): parent/child roles.
            eprintln!("rootlesskit: not implemented yet");
            std::process::exit(1);
        }
    }
}
