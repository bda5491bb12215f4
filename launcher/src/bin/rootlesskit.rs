//! `rootlesskit [flags] CMD...`: the launcher's edge. Parses the command line, maps errors to
//! RootlessKit's output and exit codes, then hands over to the parent process model.

use launcher::cli::{self, CliError, Parsed};
use launcher::{error, log};

fn main() {
    if std::env::var_os(launcher::child::reaper::ACTIVATION_HELPER_ENV).is_some() {
        launcher::child::reaper::run_activation_helper();
    }
    let args: Vec<String> = std::env::args().collect();
    let code = match cli::parse(&args) {
        Ok(Parsed::Run(opts)) => {
            log::set_debug(opts.debug);
            launcher::parent::run(*opts)
        }
        Ok(Parsed::Help(text)) | Ok(Parsed::Version(text)) | Ok(Parsed::PrintSemver(text)) => {
            print!("{text}");
            0
        }
        Err(CliError::Usage { message, usage }) => {
            eprint!("{usage}");
            error!("{message}");
            1
        }
        Err(e) => {
            error!("{e}");
            1
        }
    };
    std::process::exit(code);
}
