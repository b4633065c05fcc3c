tcpdump --immediate-mode -U -i lo  -w tls12-healthy.pcap tcp port 5671
