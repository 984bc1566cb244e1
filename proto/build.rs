//! Compiles the `.proto` files with protox (a pure-Rust protobuf compiler, so no `protoc` is
//! needed) and generates prost messages and tonic services from the descriptors.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["qkdn/peer/v1/peer.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
