"""Authorisation rules: may this principal act on this resource?"""
