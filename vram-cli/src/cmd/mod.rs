//! One module per subcommand, dispatched from `run`.

mod audit;
mod bench;
mod check;
mod demo;
mod digest;
mod hub;
mod list_devices;
mod model_ref;
mod seal;
mod signed;
mod verify_cache;

use crate::cli::{AuditCommand, Cli, Command};
use crate::exit::CliError;

pub(crate) fn run(cli: &Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Devices(a) => list_devices::run(a, cli.quiet),
        Command::Digest(a) => digest::run(a, cli.quiet),
        Command::Seal(a) => seal::run(a, cli.quiet),
        Command::Audit(AuditCommand::Verify(a)) => audit::verify(a),
        Command::Audit(AuditCommand::Show(a)) => audit::show(a, cli.quiet),
        Command::Audit(AuditCommand::Head(a)) => audit::head(a),
        Command::Audit(AuditCommand::PublicKey(a)) => audit::public_key(a),
        Command::Demo(a) => demo::run(a, cli.quiet),
        Command::Bench(a) => bench::run(a, cli.quiet),
        Command::VerifyCache(a) => verify_cache::run(a, cli.quiet),
    }
}
