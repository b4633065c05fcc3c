ip netns exec hbs2-c tcpdump --immediate-mode -U -i hbs2-c0 -w twoend-lost-c2b.client.pcap tcp port 5672
tcpdump --immediate-mode -U -i hbs2-h -w twoend-lost-c2b.broker.pcap tcp port 5672
