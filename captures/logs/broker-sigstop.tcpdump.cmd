tcpdump --immediate-mode -U -i lo  -w broker-sigstop.pcap tcp port 5672
