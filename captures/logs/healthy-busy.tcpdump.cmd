tcpdump --immediate-mode -U -i lo  -w healthy-busy.pcap tcp port 5672
