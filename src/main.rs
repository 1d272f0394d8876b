//! The `keepmover` binary: argv in, exit code out. Everything else lives in the library.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    keepmover::mover::pool::no_huge_pages();
    std::process::exit(keepmover::cli::run(std::env::args_os().collect()));
}
