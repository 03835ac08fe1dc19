//! The `vethtrace` binary: parse arguments, run, map the result to an exit
//! status. Everything else lives in the library.

use std::io::Write;

use clap::Parser;
use vethtrace::cli::Cli;

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = vethtrace::run(&cli, &mut out).and_then(|()| out.flush().map_err(vethtrace::error::Error::Output));
    match result {
        Ok(()) => {}
        // A closed pipe (`vethtrace snapshot | head`) is not an error.
        Err(vethtrace::error::Error::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(error) => {
            drop(out);
            eprintln!("vethtrace: {error}");
            std::process::exit(error.exit_code());
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(format!("vethtrace={level}")))
        .format_target(false)
        .init();
}
