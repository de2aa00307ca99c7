//! `hub broker …`: the broker's topology and admitting provinces.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use crate::config::Settings;

#[derive(Subcommand)]
pub(super) enum BrokerCommand {
    /// Create the vhost, the hub's access, the topology, and admit the given provinces.
    Provision {
        /// Province certificates to admit; repeatable.
        #[arg(long = "province-cert")]
        province_certs: Vec<PathBuf>,
    },
    /// Admit one province by its certificate (CN prov-NN): broker user, permissions, queue.
    /// Refuses a revoked certificate.
    AddProvince {
        /// The province's certificate (PEM, signed by the exchange CA, CN prov-NN).
        #[arg(long)]
        cert: PathBuf,
    },
}

pub(super) async fn run(cmd: BrokerCommand, settings: &Settings) -> Result<()> {
    match cmd {
        BrokerCommand::Provision { province_certs } => {
            let certs: Vec<&std::path::Path> = province_certs.iter().map(PathBuf::as_path).collect();
            crate::provision::provision(settings, &certs).await?;
            println!("Broker provisioned (vhost {}).", settings.broker.vhost);
            Ok(())
        }
        BrokerCommand::AddProvince { cert } => {
            let p = crate::provision::add_province(settings, &cert).await?;
            println!("Province {} ({}) admitted.", p.code(), p.name_zh());
            Ok(())
        }
    }
}
