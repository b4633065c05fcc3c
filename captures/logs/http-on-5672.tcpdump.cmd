tcpdump --immediate-mode -U -i lo  -w http-on-5672.pcap tcp port 5672 and (tcp port 42327)
