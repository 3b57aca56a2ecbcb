//! What every binary's `main` shares: turning a failure into one line on stderr and a non-zero
//! exit code, never a panic backtrace.

use std::process::ExitCode;

/// Prints `error: cause: cause…` for a failed run and returns the exit code.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Some errors already print their cause; don't say it twice.
            let mut line = String::new();
            for cause in error.chain().map(ToString::to_string) {
                if line.is_empty() {
                    line = cause;
                } else if !line.contains(&cause) {
                    line = format!("{line}: {cause}");
                }
            }
            eprintln!("error: {}", line.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
