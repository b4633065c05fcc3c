tcpdump --immediate-mode -U -i lo  -w tls12-client-stall.pcap tcp port 5671
