//! `hub`: the exchange hub and its administration commands (see [`hub::cli`]).

certs::allocator!();

fn main() -> std::process::ExitCode {
    // One crypto provider for every rustls user in the process (see notes on providers).
    let _ = rustls::crypto::ring::default_provider().install_default();
    hub::cli::main()
}
