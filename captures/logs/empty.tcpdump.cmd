tcpdump --immediate-mode -U -i lo  -w empty.pcap tcp port 1
