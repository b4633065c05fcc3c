tcpdump --immediate-mode -U -i lo  -w healthy-idle.pcap tcp port 5672
