build/obj/common/net.o: common/net.c common/ward.h
common/ward.h:
