tcpdump --immediate-mode -U -i lo  -w many-busy-one-stalled.pcap tcp port 5672
