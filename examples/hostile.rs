//! Writes the hostile-input set (`retouch::testset::hostile`) to a folder: every hostile image
//! under `DIR/in/`, every hostile manifest under `DIR/manifests/`, and `DIR/expected.csv`
//! naming the reason (images) or exit code and message (manifests) each must get.
//!
//! `cargo run --release --example hostile -- DIR [--bomb-mib 400]`

use std::path::PathBuf;

use retouch::testset::hostile::{self, BombSize};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: hostile DIR [--bomb-mib N]")?);
    let mut bomb = BombSize::FULL;
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--bomb-mib" => {
                let mib: usize = args.next().ok_or("--bomb-mib needs a number")?.parse()?;
                bomb = BombSize(mib << 20);
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    std::fs::create_dir_all(dir.join("in"))?;
    std::fs::create_dir_all(dir.join("manifests"))?;
    let mut expected = String::from("kind,name,expect\n");
    for case in hostile::images(bomb) {
        std::fs::write(dir.join("in").join(case.name), &case.bytes)?;
        expected += &format!("image,{},{}\n", case.name, case.expect);
    }
    for case in hostile::manifests() {
        std::fs::write(dir.join("manifests").join(case.name), &case.text)?;
        expected += &format!("manifest,{},exit {}: {}\n", case.name, case.exit, case.says);
    }
    std::fs::write(dir.join("expected.csv"), expected)?;
    println!("wrote the hostile set to {}", dir.display());
    Ok(())
}
