tcpdump --immediate-mode -U -i lo  -w tls13-client-stall.pcap tcp port 5671
