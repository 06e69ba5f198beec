#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    crossover::cli::main()
}
