tcpdump --immediate-mode -U -i lo  -w churn.pcap tcp port 5672
