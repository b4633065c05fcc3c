//! Connections whose clients send the same client-property values, vhost and
//! SASL mechanism share one copy of each (the memory per connection depends on
//! it, docs/performance.md "Memory"), and values that differ stay their own.
//! Real data: captures/many-busy-one-stalled.pcap (python pika and py-amqp
//! clients against RabbitMQ, recorded by the project's scripts).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use hbscope::engine::EngineConfig;
use hbscope::run::replay;

#[test]
fn equal_client_properties_vhost_and_mechanism_are_shared() {
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/many-busy-one-stalled.pcap");
    let replay = replay::replay(&pcap, EngineConfig::default(), &mut |_| {}).unwrap();
    let conns: Vec<_> = replay
        .engine
        .connections()
        .filter(|c| c.handshake().client_properties.is_some())
        .collect();
    assert!(
        conns.len() >= 4,
        "{} connections with properties",
        conns.len()
    );

    let (mut shared, mut distinct) = (0, 0);
    for (i, a) in conns.iter().enumerate() {
        for b in &conns[i + 1..] {
            let (pa, pb) = (
                a.handshake().client_properties.as_ref().unwrap(),
                b.handshake().client_properties.as_ref().unwrap(),
            );
            for (name, va) in pa.iter() {
                let Some(vb) = pb.get(name) else { continue };
                if va == vb {
                    assert!(std::ptr::eq(va, vb), "{name}: equal values not shared");
                    shared += 1;
                } else {
                    assert!(!std::ptr::eq(va, vb));
                    distinct += 1;
                }
            }
            for (x, y) in [
                (&a.handshake().vhost, &b.handshake().vhost),
                (&a.handshake().mechanism, &b.handshake().mechanism),
            ] {
                if let (Some(x), Some(y)) = (x, y) {
                    assert_eq!(x == y, Arc::ptr_eq(x, y), "{x} / {y}");
                }
            }
        }
    }
    // product, capabilities... are shared; connection_name differs on each.
    assert!(
        shared > 0 && distinct > 0,
        "shared {shared}, distinct {distinct}"
    );
}
