tcpdump --immediate-mode -U -i lo  -w ipv6.pcap tcp port 5672
