tcpdump --immediate-mode -U -i any  -w any-interface.pcap tcp port 5672
