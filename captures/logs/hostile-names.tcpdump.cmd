tcpdump --immediate-mode -U -i lo  -w hostile-names.pcap tcp port 5672
