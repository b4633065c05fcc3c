tcpdump --immediate-mode -U -i lo  -w tls13-healthy.pcap tcp port 5671
