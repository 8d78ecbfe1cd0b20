//! Host benchmark of the kernels on the default model's layer shapes (the path compiled in:
//! scalar on x86, NEON on aarch64). `cargo bench -p edgevae-firmware --bench kernels`
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use edgevae_firmware::kernels::{
    self, ConvGeom, ConvParams, DenseParams, LeI32, OutputStage, Scratch, Shape,
};

fn bytes(n: usize, seed: u32) -> Vec<i8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as i8
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let bias = vec![0u8; 4 * 3136];
    let mult: Vec<u8> = (0..3136)
        .flat_map(|_| (1_500_000_000i32).to_le_bytes())
        .collect();
    let shift = vec![-8i8; 3136];
    let stage = OutputStage {
        bias: LeI32(&bias),
        multiplier: LeI32(&mult),
        shift: &shift,
        output_zp: -128,
        act_min: -128,
        act_max: 127,
    };
    let (g3, g4) = (
        ConvGeom {
            kh: 3,
            kw: 3,
            stride: 2,
            pad: 1,
        },
        ConvGeom {
            kh: 4,
            kw: 4,
            stride: 2,
            pad: 1,
        },
    );
    let convs = [
        (
            "conv1",
            Shape { h: 28, w: 28, c: 1 },
            Shape {
                h: 14,
                w: 14,
                c: 32,
            },
            g3,
            false,
        ),
        (
            "conv2",
            Shape {
                h: 14,
                w: 14,
                c: 32,
            },
            Shape { h: 7, w: 7, c: 64 },
            g3,
            false,
        ),
        (
            "convT1",
            Shape { h: 7, w: 7, c: 64 },
            Shape {
                h: 14,
                w: 14,
                c: 32,
            },
            g4,
            true,
        ),
        (
            "convT2",
            Shape {
                h: 14,
                w: 14,
                c: 32,
            },
            Shape { h: 28, w: 28, c: 1 },
            g4,
            true,
        ),
    ];
    for (name, is, os, g, transpose) in convs {
        let (x, w) = (bytes(is.len(), 1), bytes(os.c * g.kh * g.kw * is.c, 2));
        let mut out = vec![0i8; os.len()];
        let size = if transpose {
            kernels::conv_transpose2d_scratch_size(is, os, g)
        } else {
            kernels::conv2d_scratch_size(is, os, g)
        };
        let mut scratch = vec![0u8; size];
        let f = if transpose {
            kernels::conv_transpose2d
        } else {
            kernels::conv2d
        };
        c.bench_function(name, |b| {
            b.iter(|| {
                let p = ConvParams {
                    in_shape: is,
                    out_shape: os,
                    geom: g,
                    input_zp: 3,
                };
                f(
                    &p,
                    black_box(&x),
                    &w,
                    &stage,
                    &mut out,
                    Scratch::new(&mut scratch),
                )
                .unwrap()
            })
        });
    }
    for (name, n_in, n_out) in [("dense_enc", 3136, 16), ("dense_dec", 16, 3136)] {
        let (x, w) = (bytes(n_in, 3), bytes(n_in * n_out, 4));
        let mut out = vec![0i8; n_out];
        let mut scratch = vec![0u8; kernels::dense_scratch_size(n_in, n_out)];
        c.bench_function(name, |b| {
            b.iter(|| {
                let p = DenseParams {
                    n_in,
                    n_out,
                    input_zp: 3,
                };
                kernels::dense(
                    &p,
                    black_box(&x),
                    &w,
                    &stage,
                    &mut out,
                    Scratch::new(&mut scratch),
                )
                .unwrap()
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
