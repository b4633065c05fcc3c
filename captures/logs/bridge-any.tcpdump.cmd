tcpdump --immediate-mode -U -i any  -w bridge-any.pcap tcp port 5672
